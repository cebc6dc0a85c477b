"""Clotho (Tampere University): 15-30 s sound recordings from Freesound with 5 captions each,
`clotho_captions_development.csv`, `clotho_captions_validation.csv`,
`clotho_captions_evaluation.csv`, audio in `development/`, `validation/`, `evaluation/`.

Columns: file_name, caption_1 .. caption_5. Splits: development (`train`), validation
(`valid`), evaluation (`test`). The metadata files (keywords, Freesound ids) are not read.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import DatasetFormatError, Row, caption_fields, read_csv

KIND = "caption"
COLUMNS = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
FIELDS = ("file_name", "stem", "folder")
PATTERNS = ["{folder}/{file_name}", "{file_name}", "{stem}"]
SPLITS = {"development": "train", "validation": "valid", "evaluation": "test", "test": "test"}


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(source.glob("clotho_captions_*.csv"))
        if not found:
            raise FileNotFoundError(f"{source}: no clotho_captions_*.csv in this directory")
        return found
    return [source]


def read(source: Path) -> list[Row]:
    rows = []
    for path in source_files(source):
        folder = path.stem.lower().removeprefix("clotho_captions_")
        split = SPLITS.get(folder)
        if split is None:
            raise ValueError(f"{path}: cannot tell the split from the file name "
                             "(expected clotho_captions_development/validation/evaluation.csv)")  # fmt: skip
        for line, r in read_csv(path, COLUMNS):
            where = f"{path}:{line}"
            name = r["file_name"].strip()
            if not name:
                raise DatasetFormatError(f"{where}: empty file_name")
            captions = [r[f"caption_{i}"] for i in range(1, 6)]
            fields = {**(caption_fields(captions) or {}), "split": split, "source": "clotho", "id": Path(name).stem}
            rows.append(Row(fields, {"file_name": name, "stem": Path(name).stem, "folder": folder}, where))
    return rows
