"""MusicCaps (Google): `musiccaps-public.csv`, 5,521 ten-second clips of YouTube videos, one
caption and an aspect list each, written by musicians.

Columns: ytid, start_s, end_s, audioset_positive_labels, aspect_list, caption, author_id,
is_balanced_subset, is_audioset_eval. `aspect_list` is a Python-list string (read with
ast.literal_eval). The split is `is_audioset_eval`: True is `test`, the rest `train`.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import (
    DatasetFormatError,
    Row,
    caption_fields,
    literal_list,
    read_csv,
    to_bool,
    to_number,
)

KIND = "caption"
COLUMNS = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
           "is_balanced_subset", "is_audioset_eval"]  # fmt: skip
FIELDS = ("ytid", "start", "end")
# File names as the common download scripts write them (an extension is tried when none is given).
PATTERNS = ["{ytid}", "[{ytid}]-[{start}-{end}]", "{ytid}_{start}-{end}", "{ytid}_{start}_{end}",
            "{ytid}-{start}-{end}", "Y{ytid}", "Y{ytid}_{start:.3f}_{end:.3f}"]  # fmt: skip


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(source.glob("musiccaps*.csv"))
        if not found:
            raise FileNotFoundError(f"{source}: no musiccaps-public.csv in this directory")
        return found
    return [source]


def read(source: Path) -> list[Row]:
    rows = []
    for path in source_files(source):
        for line, r in read_csv(path, COLUMNS):
            where = f"{path}:{line}"
            ytid = r["ytid"].strip()
            if not ytid:
                raise DatasetFormatError(f"{where}: empty ytid")
            start, end = to_number(r["start_s"], where, "start_s"), to_number(r["end_s"], where, "end_s")
            if not 0 <= start < end:
                raise DatasetFormatError(f"{where}: start_s {start} and end_s {end} are not a clip")
            caption = caption_fields([r["caption"]]) or {}
            fields = {
                **caption,
                "split": "test" if to_bool(r["is_audioset_eval"], where, "is_audioset_eval") else "train",
                "source": "musiccaps",
                "id": ytid,
                "aspects": literal_list(r["aspect_list"], where, "aspect_list"),
                "audioset_labels": [x.strip() for x in r["audioset_positive_labels"].split(",") if x.strip()],
                "author_id": r["author_id"].strip(),
                "is_balanced_subset": to_bool(r["is_balanced_subset"], where, "is_balanced_subset"),
            }
            rows.append(Row(fields, {"ytid": ytid, "start": start, "end": end}, where, window=(start, end)))
    return rows
