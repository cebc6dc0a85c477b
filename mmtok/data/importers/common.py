"""What every importer shares: reading CSV and JSON with errors that name file and line, finding
each row's audio under an audio root, and turning rows into manifest items plus a report of the
rows whose audio is missing or unreadable.

A format module reads its files into `Row`s: the manifest fields it knows (caption or Q&A,
split, id, attributes), the values its audio file names are made from (`keys`), and, for a clip
defined by start and end inside a longer recording, that window. `build_items` then looks for
each row's audio with the format's file-name patterns and reads each found file's header. A file
found under a name that holds the clip's start or end (`[{ytid}]-[{start}-{end}]`) is the clip
itself; one found under another name (`{ytid}`) that is longer than the clip by more than
WINDOW_TOLERANCE_S and reaches past the clip's start is the full recording: the item keeps the
window (`start_s`, `end_s`) and the clip is cut from it at shard time.
"""

from __future__ import annotations

import ast
import bisect
import csv
import gzip
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

# Extensions tried, in order, for a file name given without one (all read by libsndfile).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif")
WINDOW_TOLERANCE_S = 1.0  # a file longer than its clip by more than this is a full recording
SPLITS = ("train", "valid", "test")
CLIP_FIELDS = {"start", "end"}  # pattern fields that make a file name the clip's own


class DatasetFormatError(ValueError):
    """An input file is not in the published layout; the message names the file and line."""


class MissingAudioError(RuntimeError):
    """`strict`: some rows have no usable audio; the message lists them."""


@dataclass
class Row:
    """One manifest item before its audio is found."""

    fields: dict  # manifest fields other than `audio`: text/references or task/qa/text, split, source, id, ...
    keys: dict  # values the file-name patterns use, e.g. {"ytid": ..., "start": 30, "end": 40}
    where: str  # "file:line" of the row, for the report
    window: tuple[float, float] | None = None  # (start_s, end_s) of the clip in a longer recording
    names: list[str] = field(default_factory=list)  # exact relative paths to try before the patterns
    problem: str | None = None  # why the row cannot be an item whatever its audio (reported, left out)


# ---- reading ------------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DatasetFormatError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None


def read_csv(path: str | Path, columns: list[str]) -> list[tuple[int, dict]]:
    """(line, row) for every record of a CSV file with a header; `columns` must all be present."""
    path = Path(path)
    text = read_text(path)
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetFormatError(f"{path}:1: empty file (expected a header with {', '.join(columns)})") from None
    except csv.Error as e:
        raise DatasetFormatError(f"{path}:1: bad CSV header ({e})") from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetFormatError(f"{path}:1: missing column(s) {', '.join(missing)} "
                                 f"(header has: {', '.join(header)})")  # fmt: skip
    rows, line = [], reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DatasetFormatError(f"{path}:{line}: bad CSV record ({e})") from None
        if record and any(v.strip() for v in record):
            if len(record) != len(header):
                raise DatasetFormatError(f"{path}:{line}: {len(record)} fields, the header has {len(header)}")
            rows.append((line, dict(zip(header, record))))
        line = reader.line_num + 1
    return rows


class _Lines:
    """Character offset -> line number of a text."""

    def __init__(self, text: str):
        self.starts = [m.end() for m in re.finditer("\n", text)]

    def __call__(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) + 1


_WS = re.compile(r"\s*")


_DECODER = json.JSONDecoder()


def _decode_at(path, text, pos, lines):
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}:{lines(e.pos)}: not valid JSON ({e.msg})") from None


def _array_items(path, text, pos, lines) -> tuple[list[tuple[int, object]], int]:
    """Elements of the JSON array starting at text[pos] == '[' with their line numbers."""
    out, pos = [], _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        return out, pos + 1
    while True:
        value, end = _decode_at(path, text, pos, lines)
        out.append((lines(pos), value))
        pos = _WS.match(text, end).end()
        if text.startswith("]", pos):
            return out, pos + 1
        if not text.startswith(",", pos):
            raise DatasetFormatError(f"{path}:{lines(pos)}: not valid JSON (expected ',' or ']' in the list)")
        pos = _WS.match(text, pos + 1).end()


def read_json_records(path: str | Path, key: str | None = None) -> list[tuple[int, object]]:
    """(line, record) of a JSON list, of the list under `key` of a JSON object, or of JSON lines."""
    path = Path(path)
    text = read_text(path)
    lines = _Lines(text)
    pos = _WS.match(text).end()
    if text.startswith("[", pos):
        records, end = _array_items(path, text, pos, lines)
    elif key is not None and text.startswith("{", pos):  # {"key": [...], ...}: find the key's list
        pos, records, end = _WS.match(text, pos + 1).end(), None, None
        while not text.startswith("}", pos):
            name, pos = _decode_at(path, text, pos, lines)
            pos = _WS.match(text, pos).end()
            if not isinstance(name, str) or not text.startswith(":", pos):
                raise DatasetFormatError(f"{path}:{lines(pos)}: not valid JSON (expected a key and ':')")
            pos = _WS.match(text, pos + 1).end()
            if name == key and text.startswith("[", pos):
                records, pos = _array_items(path, text, pos, lines)
            else:
                _, pos = _decode_at(path, text, pos, lines)
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
        end = pos + 1
        if records is None:
            raise DatasetFormatError(f"{path}:1: expected a JSON object with a list under {key!r}")
    else:  # JSON lines
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DatasetFormatError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        return records
    if text[end:].strip():
        raise DatasetFormatError(f"{path}:{lines(end)}: unexpected text after the JSON value")
    return records


def need(path, line, record, names: list[str]) -> None:
    """A JSON record must be an object with these keys."""
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{path}:{line}: expected a JSON object, got {type(record).__name__}")
    missing = [n for n in names if n not in record]
    if missing:
        raise DatasetFormatError(f"{path}:{line}: missing field(s) {', '.join(missing)}")


# ---- values -------------------------------------------------------------------------------------
def to_bool(value, where: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "t"):
        return True
    if s in ("false", "0", "no", "f", ""):
        return False
    raise DatasetFormatError(f"{where}: {name} must be True or False, got {value!r}")


def to_number(value, where: str, name: str) -> int | float:
    """An int when integral (so "30" and 30.0 both name files as 30), else a float."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: {name} must be a number, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise DatasetFormatError(f"{where}: {name} must be a finite number, got {value!r}")
    return int(x) if x.is_integer() else x


def literal_list(value: str, where: str, name: str) -> list[str]:
    """A Python-list string such as "['piano', 'slow']" (ast.literal_eval, never eval)."""
    if isinstance(value, list):
        parsed = value
    else:
        try:
            parsed = ast.literal_eval(value.strip()) if value.strip() else []
        except (ValueError, SyntaxError) as e:
            raise DatasetFormatError(f"{where}: {name} is not a Python list literal ({e}): {value[:80]!r}") from None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(v, str) for v in parsed):
        raise DatasetFormatError(f"{where}: {name} must be a list of strings, got {value[:80]!r}")
    return [v.strip() for v in parsed if v.strip()]


def word_list(value) -> list[str]:
    """A list, or a comma-separated string, of non-empty words."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return []


_TONIC = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*[:_ -]?\s*(.*?)\s*$")
_ACCIDENTALS = [(r"\s*-?\s*sharp\b", "#"), (r"\s*-?\s*flat\b", "b"), ("♯", "#"), ("♭", "b")]
_MODES = {"major": "major", "maj": "major", "": None, "minor": "minor", "min": "minor", "m": "minor"}


def parse_key(value) -> tuple[str, str | None] | None:
    """"D minor", "F# major", "Bb", "Ebm", "A:min", "G flat major", ["D", "minor"] -> (tonic, mode);
    None if the value is not a key."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        value = " ".join(value[:2])
    if not isinstance(value, str):
        return None
    for pattern, sign in _ACCIDENTALS:
        value = re.sub(pattern, sign, value, flags=re.IGNORECASE)
    m = _TONIC.match(value)
    if not m or m.group(3).lower() not in _MODES:
        return None
    return m.group(1).upper() + m.group(2), _MODES[m.group(3).lower()]


def key_fields(value) -> dict:
    parsed = parse_key(value)
    if parsed is None:
        return {}
    tonic, mode = parsed
    return {"key": tonic, **({"mode": mode} if mode else {})}


def caption_fields(captions: list[str]) -> dict | None:
    """`text` (the first caption) and `references` (the others, when there are any); None if none."""
    out: list[str] = []
    for c in captions:
        c = c.strip() if isinstance(c, str) else ""
        if c and c not in out:
            out.append(c)
    if not out:
        return None
    return {"text": out[0], **({"references": out[1:]} if len(out) > 1 else {})}


# ---- finding audio ------------------------------------------------------------------------------
class AudioIndex:
    """Every file under an audio root, by relative path and by file name (walked once)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"audio root {self.root} is not a directory")
        self.by_name: dict[str, list[str]] = {}
        self.relative: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                r = name if rel == "." else f"{rel}/{name}"
                self.relative.add(r)
                self.by_name.setdefault(name, []).append(r)

    def find(self, name: str) -> str | None:
        """A relative path (exact, or the shallowest file of that name anywhere under the root)."""
        name = name.replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        if name in self.relative:
            return str(self.root / name)
        if os.path.isabs(name) and os.path.isfile(name):
            return name
        found = self.by_name.get(name.rsplit("/", 1)[-1])
        if not found:
            return None
        if "/" in name:  # prefer a file whose path ends like the name's
            tail = [f for f in found if f.endswith("/" + name) or f == name]
            found = tail or found
        return str(self.root / min(found, key=lambda f: (f.count("/"), f)))


def pattern_fields(pattern: str) -> set[str]:
    try:
        return {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(pattern) if f}
    except ValueError as e:
        raise ValueError(f"audio pattern {pattern!r} is not a format string ({e})") from None


def check_patterns(patterns: list[str], fields: tuple[str, ...], fmt: str) -> None:
    """A pattern may use only the format's fields: a typo is an error before any file is read."""
    for p in patterns:
        unknown = pattern_fields(p) - set(fields)
        if unknown:
            raise ValueError(f"audio pattern {p!r} uses {', '.join(sorted(unknown))}, which {fmt} rows do not "
                             f"have; its fields are {', '.join('{' + f + '}' for f in fields)}")  # fmt: skip


def audio_names(row: Row, patterns: list[str]) -> list[tuple[str, bool]]:
    """(file name, names the clip itself?) to look for, in order: the row's own names, then each
    pattern whose fields the row has (MusicInstruct rows, for one, may lack a clip's start)."""
    out: list[tuple[str, bool]] = [(n, False) for n in row.names]
    for p in patterns:
        fields = pattern_fields(p)
        if fields <= row.keys.keys():
            out.append((p.format(**row.keys), bool(fields & CLIP_FIELDS)))
    seen: set[str] = set()
    return [(n, clip) for n, clip in out if not (n in seen or seen.add(n))]


def with_extensions(name: str) -> list[str]:
    """The name with each audio extension: its own first when it has one (then the others, for
    audio converted to another format), else each one added."""
    suffix = Path(name).suffix
    if suffix.lower() in AUDIO_EXTENSIONS:
        stem = name[: -len(suffix)]
        return [name] + [stem + ext for ext in AUDIO_EXTENSIONS if ext != suffix.lower()]
    return [name + ext for ext in AUDIO_EXTENSIONS]


# ---- rows -> manifest items ---------------------------------------------------------------------
@dataclass
class ImportResult:
    items: list[dict]  # manifest items, `audio` absolute
    problems: list[dict]  # rows left out: where, id, reason, looked_for
    rows: int = 0  # rows of the selected splits


def build_items(rows: list[Row], audio_root: str | Path, patterns: list[str]) -> ImportResult:
    """Find each row's audio; rows without usable audio go to `problems`, never raise."""
    index = AudioIndex(audio_root)
    items, problems = [], []
    for row in rows:
        if row.problem or not row.fields.get("text"):
            problems.append({"where": row.where, "id": row.fields.get("id"), "split": row.fields.get("split"),
                             "reason": row.problem or ("no question with an answer" if row.fields.get("task") == "qa"
                                                       else "no caption")})  # fmt: skip
            continue
        names = audio_names(row, patterns)
        path, clip_named = next(((p, clip) for n, clip in names for p in map(index.find, with_extensions(n)) if p),
                                (None, False))  # fmt: skip
        base = {"where": row.where, "id": row.fields.get("id"), "split": row.fields.get("split")}
        if path is None:
            problems.append({**base, "reason": "audio not found", "looked_for": [n for n, _ in names]})
            continue
        try:
            info = sf.info(path)
        except Exception as e:
            problems.append({**base, "reason": f"unreadable audio ({type(e).__name__}: {e})", "audio": path})
            continue
        if info.frames == 0:
            problems.append({**base, "reason": "empty audio (0 samples)", "audio": path})
            continue
        first = [k for k in ("task", "qa", "text", "references") if k in row.fields]
        item = {"audio": path, **{k: row.fields[k] for k in first}, **row.fields}
        if row.window is not None and not clip_named:
            start, end = row.window
            if info.duration > (end - start) + WINDOW_TOLERANCE_S and start < info.duration:  # the full recording
                item["start_s"], item["end_s"] = start, end
        items.append(item)
    return ImportResult(items, problems, len(rows))
