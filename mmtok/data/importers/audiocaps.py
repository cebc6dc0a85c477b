"""AudioCaps: captions of 10-second AudioSet clips (general sound, not only music):
`train.csv`, `val.csv`, `test.csv` from the AudioCaps repository.

Columns: audiocap_id, youtube_id, start_time, caption. A clip is 10 s of a YouTube video from
`start_time`; val and test give 5 captions per clip, which become one item (`text` and
`references`), grouped by youtube_id and start_time. Splits: train, val (`valid`), test.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import DatasetFormatError, Row, caption_fields, read_csv, to_number

KIND = "caption"
COLUMNS = ["audiocap_id", "youtube_id", "start_time", "caption"]
CLIP_SECONDS = 10
FIELDS = ("youtube_id", "ytid", "start", "end", "audiocap_id")
PATTERNS = ["{youtube_id}", "Y{youtube_id}", "{youtube_id}_{start}", "{youtube_id}_{start}_{end}",
            "[{youtube_id}]-[{start}-{end}]", "{youtube_id}_{start}-{end}", "Y{youtube_id}_{start:.3f}_{end:.3f}",
            "{audiocap_id}"]  # fmt: skip
SPLITS = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}


def split_of(path: Path) -> str:
    split = SPLITS.get(path.stem.lower())
    if split is None:
        raise ValueError(f"{path}: cannot tell the split from the file name (expected train.csv, val.csv or test.csv)")
    return split


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = [source / f"{n}.csv" for n in ("train", "val", "test") if (source / f"{n}.csv").is_file()]
        if not found:
            raise FileNotFoundError(f"{source}: no train.csv, val.csv or test.csv in this directory")
        return found
    return [source]


def read(source: Path) -> list[Row]:
    rows = []
    for path in source_files(source):
        split = split_of(path)
        clips: dict[tuple[str, int | float], dict] = {}
        for line, r in read_csv(path, COLUMNS):
            where = f"{path}:{line}"
            ytid = r["youtube_id"].strip()
            if not ytid:
                raise DatasetFormatError(f"{where}: empty youtube_id")
            start = to_number(r["start_time"], where, "start_time")
            if start < 0:
                raise DatasetFormatError(f"{where}: negative start_time {start}")
            c = clips.setdefault((ytid, start), {"where": where, "captions": [], "ids": []})
            c["captions"].append(r["caption"])
            c["ids"].append(r["audiocap_id"].strip())
        for (ytid, start), c in clips.items():
            end = start + CLIP_SECONDS
            fields = {**(caption_fields(c["captions"]) or {}), "split": split, "source": "audiocaps",
                      "id": f"{ytid}_{start}", "youtube_id": ytid, "audiocap_ids": c["ids"]}  # fmt: skip
            keys = {"youtube_id": ytid, "ytid": ytid, "start": start, "end": end, "audiocap_id": c["ids"][0]}
            rows.append(Row(fields, keys, c["where"], window=(start, end)))
    return rows
