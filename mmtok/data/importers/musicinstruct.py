"""MusicInstruct (MI, from MusiLingo): question-answer pairs about MusicCaps clips, as one JSON
object {"QA": [{"ytid", "question", "answer", "is_audioset_eval", ...}, ...]}.

All pairs about one clip become one Q&A item (`qa`), in file order. The split follows MusicCaps:
`is_audioset_eval` true is `test`, else `train`. The audio is the MusicCaps clip: with
`musiccaps_csv` (MusicCaps' `musiccaps-public.csv`) each clip's start and end are known, so the
MusicCaps file names with start and end are found too and a full-length recording is cut to the
clip; without it the audio must be named by ytid.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import DatasetFormatError, Row, need, read_csv, read_json_records, to_bool, to_number
from mmtok.data.importers.musiccaps import FIELDS as MUSICCAPS_FIELDS
from mmtok.data.importers.musiccaps import PATTERNS as MUSICCAPS_PATTERNS

KIND = "qa"
REQUIRED = ["ytid", "question", "answer"]
FIELDS = MUSICCAPS_FIELDS
PATTERNS = MUSICCAPS_PATTERNS


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(p for p in source.glob("*.json") if "instruct" in p.name.lower())
        if not found:
            raise FileNotFoundError(f"{source}: no MusicInstruct JSON files in this directory")
        return found
    return [source]


def clip_windows(csv_path: Path) -> dict[str, tuple]:
    out = {}
    for line, r in read_csv(csv_path, ["ytid", "start_s", "end_s"]):
        where = f"{csv_path}:{line}"
        out[r["ytid"].strip()] = (to_number(r["start_s"], where, "start_s"), to_number(r["end_s"], where, "end_s"))
    return out


def read(source: Path, musiccaps_csv: str | Path | None = None) -> list[Row]:
    windows = clip_windows(Path(musiccaps_csv)) if musiccaps_csv else {}
    clips: dict[str, dict] = {}
    for path in source_files(source):
        for line, r in read_json_records(path, key="QA"):
            where = f"{path}:{line}"
            need(path, line, r, REQUIRED)
            ytid = r["ytid"]
            if not isinstance(ytid, str) or not ytid.strip():
                raise DatasetFormatError(f"{where}: ytid must be a non-empty string")
            if not isinstance(r["question"], str) or not isinstance(r["answer"], str):
                raise DatasetFormatError(f"{where}: question and answer must be strings")
            c = clips.setdefault(ytid.strip(), {"where": where, "qa": [], "eval": False})
            if r["question"].strip() and r["answer"].strip():
                c["qa"].append({"q": r["question"].strip(), "a": r["answer"].strip()})
            if "is_audioset_eval" in r:
                c["eval"] = to_bool(r["is_audioset_eval"], where, "is_audioset_eval")
            for k in ("start_s", "end_s"):  # some copies carry the clip's window themselves
                if k in r and ytid not in windows:
                    c[k] = to_number(r[k], where, k)
    rows = []
    for ytid, c in clips.items():
        fields = {"task": "qa", "qa": c["qa"], "split": "test" if c["eval"] else "train", "source": "musicinstruct",
                  "id": ytid}  # fmt: skip
        if c["qa"]:
            fields["text"] = c["qa"][0]["a"]
        window = windows.get(ytid) or ((c["start_s"], c["end_s"]) if "start_s" in c and "end_s" in c else None)
        keys = {"ytid": ytid, **({"start": window[0], "end": window[1]} if window else {})}
        rows.append(Row(fields, keys, c["where"], window=window))
    return rows
