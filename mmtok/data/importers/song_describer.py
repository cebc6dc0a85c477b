"""Song Describer Dataset (SDD): `song_describer.csv`, about 1.1k captions of 706 two-minute
music recordings from the MTG-Jamendo dataset, several captions per recording.

Columns: caption_id, track_id, caption, is_valid_subset, familiarity, artist_id, album_id, path,
duration. `path` names the audio file relative to the audio directory (e.g.
`00/1051200.2min.mp3`). The captions of one track become one item: `text` and `references`. The
set is for evaluation: every item is `test`. `is_valid_subset` marks the captions that passed
the authors' validation; they come first, and the item's `is_valid_subset` is true when it has one.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import DatasetFormatError, Row, caption_fields, read_csv, to_bool, to_number

KIND = "caption"
COLUMNS = ["caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id", "album_id", "path",
           "duration"]  # fmt: skip
FIELDS = ("track_id", "path", "stem")
PATTERNS = ["{path}", "{stem}", "{track_id}"]


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(source.glob("song_describer*.csv"))
        if not found:
            raise FileNotFoundError(f"{source}: no song_describer.csv in this directory")
        return found
    return [source]


def read(source: Path) -> list[Row]:
    tracks: dict[str, dict] = {}  # track_id -> {where, path, captions: [(valid, caption, caption_id)], ...}
    for path in source_files(source):
        for line, r in read_csv(path, COLUMNS):
            where = f"{path}:{line}"
            track = r["track_id"].strip()
            if not track:
                raise DatasetFormatError(f"{where}: empty track_id")
            if not r["path"].strip():
                raise DatasetFormatError(f"{where}: empty path")
            t = tracks.setdefault(track, {"where": where, "path": r["path"].strip(), "captions": [],
                                          "artist_id": r["artist_id"].strip(), "album_id": r["album_id"].strip(),
                                          "duration": to_number(r["duration"], where, "duration")
                                          if r["duration"].strip() else None})  # fmt: skip
            valid = to_bool(r["is_valid_subset"], where, "is_valid_subset")
            t["captions"].append((not valid, len(t["captions"]), r["caption"], r["caption_id"].strip()))
    rows = []
    for track, t in tracks.items():
        ordered = sorted(t["captions"])  # validated captions first, then file order
        fields = {
            **(caption_fields([c for _, _, c, _ in ordered]) or {}),
            "split": "test",
            "source": "song_describer",
            "id": track,
            "track_id": track,
            "caption_ids": [cid for _, _, _, cid in ordered],
            "is_valid_subset": any(not invalid for invalid, _, _, _ in ordered),
            "artist_id": t["artist_id"],
            "album_id": t["album_id"],
        }
        if t["duration"] is not None:
            fields["track_duration"] = t["duration"]
        stem = Path(t["path"]).name.split(".")[0]
        rows.append(Row(fields, {"track_id": track, "path": t["path"], "stem": stem}, t["where"]))
    return rows
