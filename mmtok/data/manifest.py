"""JSONL manifests: the user-facing description of a data set, one item per line.

Each line is a JSON object with `audio` (a path; relative paths are relative to the manifest's
directory) and `text` (the caption); every other field is carried into the shard's metadata.
An optional `references` (a string or a list of strings) holds more captions of the same clip, as
AudioCaps and Clotho have 5 per clip: training draws one of text + references each time a clip is
used (`TemplateConfig.use_references`), evaluation scores against them all.

An optional `task` says what the item is for (`mmtok.data.tasks`): `qa` (with `qa`: question and
answer turns), `segments` (with `segments`: time-stamped sections; `text`, a caption of the
whole, may be left out) or `playlist` (with `audios`: 2 to 8 paths, and `text`). Without `task`
an item is a caption item.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmtok.atomic import write_text_atomic
from mmtok.data.tasks import TaskItemError, check_item, format_segments, task_of


class ManifestError(ValueError):
    """A manifest line is not usable (bad JSON, missing `audio`/`text`)."""


def read_manifest(path: str | Path) -> list[dict]:
    """Items of a manifest, `audio` made absolute; raises ManifestError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist")
    items = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(item, dict):
                raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(item).__name__}")
            try:
                check_item(item, f"{path}:{lineno}")
            except TaskItemError as e:
                raise ManifestError(str(e)) from None
            task = task_of(item)
            if task == "qa" and not isinstance(item.get("text"), str):
                item["text"] = item["qa"][0]["a"]
            if task == "segments" and not isinstance(item.get("text"), str):
                item["text"] = format_segments(item["segments"])  # no caption of the whole: the sections'
                item["global_caption"] = False
            if task == "playlist":
                item["audios"] = [_absolute(path, a) for a in item["audios"]]
                item.setdefault("audio", item["audios"][0])
            for key in ("audio", "text"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    raise ManifestError(f"{path}:{lineno}: missing or empty string field {key!r}")
            refs = item.get("references")
            if refs is not None and not (isinstance(refs, str) or (
                    isinstance(refs, list) and all(isinstance(r, str) for r in refs))):
                raise ManifestError(f"{path}:{lineno}: 'references' must be a string or a list of strings, "
                                    f"got {json.dumps(refs)[:80]}")
            item["audio"] = _absolute(path, item["audio"])
            items.append(item)
    return items


def _absolute(manifest: Path, audio: str) -> str:
    p = Path(audio).expanduser()
    return str(p if p.is_absolute() else (manifest.parent / p).resolve())


def captions_of(text: str, references=None) -> list[str]:
    """A clip's captions: `text` first, then each distinct non-empty string of `references`
    (a string or a list of strings; anything else is ignored)."""
    extra = [references] if isinstance(references, str) else references if isinstance(references, list) else []
    out = [text]
    for r in extra:
        if isinstance(r, str) and r.strip() and r not in out:
            out.append(r)
    return out


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write rows as JSONL, aside then renamed, so a reader never sees half a file."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
