"""Importers: published caption and instruction data sets -> JSONL manifests for `mmtok data shard`.

`import_dataset(FORMAT, SOURCE, audio_root, out)` reads a data set's own files (one module per
format), finds each row's audio under `audio_root`, and writes the manifest: caption items
(`text`, `references`, attributes) or Q&A items (`task: "qa"`, `qa`), each with `split`,
`source` and `id`. Rows whose audio is missing or unreadable are left out, counted and listed
in a report file, never fatal unless `strict`. See docs/datasets.md.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import mmtok.data.importers.audiocaps as audiocaps
import mmtok.data.importers.audiocraft as audiocraft
import mmtok.data.importers.clotho as clotho
import mmtok.data.importers.musicbench as musicbench
import mmtok.data.importers.musiccaps as musiccaps
import mmtok.data.importers.musicinstruct as musicinstruct
import mmtok.data.importers.musicqa as musicqa
import mmtok.data.importers.song_describer as song_describer
from mmtok.data.importers.common import SPLITS, DatasetFormatError, MissingAudioError, Row, build_items, check_patterns
from mmtok.data.manifest import write_jsonl

FORMATS = {
    "musiccaps": musiccaps,
    "song_describer": song_describer,
    "musicbench": musicbench,
    "audiocaps": audiocaps,
    "clotho": clotho,
    "musicqa": musicqa,
    "musicinstruct": musicinstruct,
    "audiocraft": audiocraft,
}

__all__ = ["FORMATS", "DatasetFormatError", "MissingAudioError", "import_dataset", "read_rows", "report_path"]


def _module(fmt: str):
    if fmt not in FORMATS:
        raise ValueError(f"unknown data set format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def read_rows(fmt: str, source: str | Path, audio_root: str | Path | None = None,
              musiccaps_csv: str | Path | None = None) -> list[Row]:
    """The data set's rows as the format defines them (no audio looked up yet)."""
    module, source = _module(fmt), Path(source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found")
    if fmt == "musicinstruct":
        return module.read(source, musiccaps_csv=musiccaps_csv)
    if musiccaps_csv:
        raise ValueError("--musiccaps-csv is for the musicinstruct format only")
    if fmt == "audiocraft":
        return module.read(source, audio_root=Path(audio_root).expanduser().resolve() if audio_root else None)
    return module.read(source)


def report_path(out: str | Path) -> Path:
    """Where the import report goes by default: beside the manifest, `<name>.import-report.jsonl`
    (`{split}` in the name becomes `all`)."""
    out = Path(str(out).replace("{split}", "all"))
    return out.with_name(out.name.removesuffix(".jsonl") + ".import-report.jsonl")


def import_dataset(fmt: str, source: str | Path, audio_root: str | Path, out: str | Path,
                   splits: list[str] | None = None, patterns: list[str] | None = None, strict: bool = False,
                   report: str | Path | None = None, musiccaps_csv: str | Path | None = None) -> dict:
    """Import a data set; returns a summary. `out` may hold `{split}` (one manifest per split);
    `splits` keeps only those; `patterns` replace the format's audio file-name patterns."""
    module = _module(fmt)
    for s in splits or []:
        if s not in SPLITS:
            raise ValueError(f"unknown split {s!r}; splits are {', '.join(SPLITS)}")
    patterns = list(patterns) if patterns else list(module.PATTERNS)
    check_patterns(patterns, module.FIELDS, fmt)
    rows = read_rows(fmt, source, audio_root, musiccaps_csv)
    if splits:
        rows = [r for r in rows if r.fields["split"] in splits]
    result = build_items(rows, audio_root, patterns)
    report = Path(report) if report else report_path(out)
    write_jsonl(report, result.problems)
    reasons = Counter(p["reason"].split(" (")[0] for p in result.problems)
    if result.problems and (strict or not result.items):
        shown = "\n".join(f"  {p['where']}: {p.get('id')}: {p['reason']}" for p in result.problems[:50])
        more = f"\n  ... and {len(result.problems) - 50} more" if len(result.problems) > 50 else ""
        what = "rows without usable audio" if result.items else "no row has usable audio (check --audio-root)"
        raise MissingAudioError(f"{fmt}: {len(result.problems)} of {result.rows} {what}; no manifest written; "
                                f"all listed in {report}:\n{shown}{more}")  # fmt: skip
    by_split: dict[str, list[dict]] = {}
    for item in result.items:
        by_split.setdefault(item["split"], []).append(item)
    targets = ({Path(str(out).replace("{split}", s)): items for s, items in by_split.items()} if "{split}" in str(out)
               else {Path(out): result.items})  # fmt: skip
    manifests = {}
    for path, items in targets.items():
        base = path.expanduser().resolve().parent
        write_jsonl(path, [{**item, "audio": os.path.relpath(item["audio"], base)} for item in items])
        manifests[str(path)] = len(items)
    return {
        "format": fmt,
        "rows": result.rows,
        "items": len(result.items),
        "splits": {s: len(v) for s, v in sorted(by_split.items(), key=lambda kv: SPLITS.index(kv[0]))},
        "windows": sum("start_s" in item for item in result.items),
        "problems": len(result.problems),
        "problem_reasons": dict(reasons),
        "manifests": manifests,
        "report": str(report),
    }
