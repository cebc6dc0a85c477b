"""audiocraft-style data sets (the layout MusicGen trains on): `data.jsonl` (or `data.jsonl.gz`),
one {"path", "duration", "sample_rate", ...} line per audio file, and beside each audio file a
`.json` with its metadata: description, bpm, key, genre, instrument, moods, keywords, title,
artist, ...

`description` is `text`; `bpm` becomes `tempo_bpm`, `key` ("C minor") `key` and `mode`,
`instrument` `instrument` (one name) or `instruments` (several, comma-separated or a list),
`moods` and `keywords` lists; `genre`, `title` and `artist` are kept as they are. The split comes
from the directory of data.jsonl (audiocraft's `egs/train`, `egs/valid`, `egs/evaluate`):
train, valid, evaluate/eval/test/generate (`test`); any other name is `train`.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import (
    DatasetFormatError,
    Row,
    caption_fields,
    key_fields,
    need,
    read_json_records,
    word_list,
)

KIND = "caption"
REQUIRED = ["path"]
FIELDS = ("path", "name", "stem")
PATTERNS = ["{path}", "{name}"]
SPLITS = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "evaluate": "test",
          "eval": "test", "test": "test", "generate": "test"}  # fmt: skip


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(p for p in source.rglob("data.jsonl*") if p.name in ("data.jsonl", "data.jsonl.gz"))
        if not found:
            raise FileNotFoundError(f"{source}: no data.jsonl under this directory")
        return found
    return [source]


def sidecar(path: str, data_file: Path, audio_root: Path | None, info_path=None) -> tuple[dict | None, str]:
    """The metadata JSON of an audio file: `info_path`, else the audio path with `.json`, looked for
    as given, under the audio root and beside data.jsonl."""
    rel = Path(info_path) if info_path else Path(path).with_suffix(".json")
    options = [rel] if rel.is_absolute() else [rel, *([audio_root / rel] if audio_root else []), data_file.parent / rel]
    if rel.is_absolute() and audio_root:
        options.append(audio_root / rel.name)
    for p in options:
        if p.is_file():
            records = read_json_records(p)
            if len(records) != 1 or not isinstance(records[0][1], dict):
                raise DatasetFormatError(f"{p}:1: expected one JSON object (the audio file's metadata)")
            return records[0][1], str(p)
    return None, str(rel)


def attributes(meta: dict, where: str) -> dict:
    out = {}
    bpm = meta.get("bpm")
    try:
        if bpm not in (None, "") and float(bpm) > 0:
            out["tempo_bpm"] = int(float(bpm)) if float(bpm).is_integer() else float(bpm)
    except (TypeError, ValueError):
        pass  # free text such as "slow": not a tempo
    out.update(key_fields(meta.get("key")))
    instruments = word_list(meta.get("instrument"))
    if len(instruments) == 1:
        out["instrument"] = instruments[0]
    elif instruments:
        out["instruments"] = instruments
    for name in ("moods", "keywords"):
        if word_list(meta.get(name)):
            out[name] = word_list(meta.get(name))
    for name in ("genre", "title", "artist"):
        if isinstance(meta.get(name), str) and meta[name].strip():
            out[name] = meta[name].strip()
    return out


def read(source: Path, audio_root: Path | None = None) -> list[Row]:
    rows = []
    for data_file in source_files(source):
        split = SPLITS.get(data_file.parent.name.lower(), "train")
        for line, r in read_json_records(data_file):
            where = f"{data_file}:{line}"
            need(data_file, line, r, REQUIRED)
            path = r["path"]
            if not isinstance(path, str) or not path.strip():
                raise DatasetFormatError(f"{where}: path must be a non-empty string")
            meta, meta_path = sidecar(path, data_file, audio_root, r.get("info_path"))
            fields = {"split": split, "source": "audiocraft", "id": Path(path).stem}
            problem = None
            if meta is None:
                problem = f"no metadata file {meta_path}"
            else:
                caption = caption_fields([meta.get("description") if isinstance(meta.get("description"), str) else ""])
                if caption is None:
                    problem = f"empty description in {meta_path}"
                fields.update({**(caption or {}), **attributes(meta, where)})
            rows.append(Row(fields, {"path": path, "name": Path(path).name, "stem": Path(path).stem}, where,
                            problem=problem))  # fmt: skip
    return rows
