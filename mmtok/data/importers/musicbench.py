"""MusicBench (AMAAI Lab, from the Mustango work): MusicCaps clips and their augmented variants
with captions enriched by music features, as JSON lines (`MusicBench_train.json`,
`MusicBench_test_A.json`, `MusicBench_test_B.json`).

Fields: location, main_caption, alt_caption, prompt_aug, prompt_ch, prompt_bt, prompt_bpm,
prompt_key, beats, bpm, chords, chords_time, key, keyprob, is_audioset_eval_mcaps. `location`
is the audio path relative to the data set's root (`data/<ytid>_<n>.wav`). `main_caption` is
`text`, `alt_caption` (the caption with the feature sentences reworded) a reference. `bpm`
becomes `tempo_bpm`, `key` (`["D", "minor"]`) becomes `key` and `mode`; `chords` and
`chords_time` are kept; `beats`, `keyprob` and the prompt_* sentences (already inside the
captions) are left out. The split comes from the file name: `test` in it is `test`, else `train`.
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
    to_bool,
    to_number,
)

KIND = "caption"
REQUIRED = ["location", "main_caption"]
FIELDS = ("location", "name", "stem")
PATTERNS = ["{location}", "{name}", "{stem}"]


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(p for p in source.glob("*.json*") if "musicbench" in p.name.lower())
        if not found:
            raise FileNotFoundError(f"{source}: no MusicBench*.json files in this directory")
        return found
    return [source]


def read(source: Path) -> list[Row]:
    rows = []
    for path in source_files(source):
        split = "test" if "test" in path.name.lower() else "train"
        for line, r in read_json_records(path):
            where = f"{path}:{line}"
            need(path, line, r, REQUIRED)
            location = r["location"]
            if not isinstance(location, str) or not location.strip():
                raise DatasetFormatError(f"{where}: location must be a non-empty string")
            captions = [c for c in (r.get("main_caption"), r.get("alt_caption")) if isinstance(c, str)]
            name = Path(location).name
            fields = {**(caption_fields(captions) or {}), "split": split, "source": "musicbench",
                      "id": Path(location).stem}  # fmt: skip
            if r.get("bpm") not in (None, ""):
                fields["tempo_bpm"] = to_number(r["bpm"], where, "bpm")
            fields.update(key_fields(r.get("key")))
            if isinstance(r.get("chords"), list):
                fields["chords"] = [str(c) for c in r["chords"]]
            if isinstance(r.get("chords_time"), list):
                fields["chords_time"] = [to_number(t, where, "chords_time") for t in r["chords_time"]]
            if "is_audioset_eval_mcaps" in r:
                fields["is_audioset_eval_mcaps"] = to_bool(r["is_audioset_eval_mcaps"], where, "is_audioset_eval_mcaps")
            rows.append(Row(fields, {"location": location, "name": name, "stem": Path(location).stem}, where))
    return rows
