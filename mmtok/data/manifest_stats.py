"""What a JSONL manifest holds, before any sharding: items per split and task, hours of audio
(from file headers, so it is fast), caption lengths, missing files, and optionally text tokens.

Works on any manifest: the demo corpus's, an imported data set's (`mmtok data import`), your own.
A clip cut from a longer file (`start_s` / `end_s`) counts its window's length.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from mmtok.data.manifest import captions_of, read_manifest
from mmtok.data.shard import clip_window, window_frames


def distribution(values: list[float]) -> dict:
    """min / median / p95 / max / mean of a list (empty: only the count)."""
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=np.float64)
    r = lambda x: round(float(x), 2)
    return {"count": int(a.size), "min": r(a.min()), "median": r(np.median(a)), "p95": r(np.percentile(a, 95)),
            "max": r(a.max()), "mean": r(a.mean())}  # fmt: skip


def item_texts(item: dict) -> tuple[list[str], list[str], list[str]]:
    """(captions, questions, answers) of an item: a Q&A item's pairs, else its captions."""
    qa = item.get("qa")
    if item.get("task") == "qa" and isinstance(qa, list):
        pairs = [p for p in qa if isinstance(p, dict)]
        return [], [str(p.get("q", "")) for p in pairs], [str(p.get("a", "")) for p in pairs]
    return captions_of(item["text"], item.get("references")), [], []


def clip_seconds(item: dict, info) -> float:
    """Seconds of an item's audio: its window when it has one (a malformed one counts the file)."""
    try:
        window = clip_window(item)
    except ValueError:
        window = None
    a, b = window_frames(window, info.samplerate, info.frames) if window else (0, info.frames)
    return max(0, b - a) / info.samplerate


def manifest_stats(paths: list[str | Path], tokenizer=None, max_listed: int = 20) -> dict:
    """Statistics of one or more manifests; `tokenizer` (a MultimodalTokenizer) adds text tokens."""
    items = []
    for path in paths:
        items += read_manifest(path)
    by_split, by_task = Counter(), Counter()
    seconds_by_split: Counter = Counter()
    missing, unreadable = [], []
    words = {"captions": [], "questions": [], "answers": []}
    tokens = {"captions": [], "questions": [], "answers": []}
    headers: dict[str, object] = {}
    durations = []
    for item in items:
        split, task = str(item.get("split", "-")), str(item.get("task", "caption"))
        by_split[split] += 1
        by_task[task] += 1
        path = item["audio"]
        if path not in headers:
            try:
                headers[path] = sf.info(path) if os.path.exists(path) else None
            except Exception as e:  # any header problem is "unreadable"
                headers[path] = f"{type(e).__name__}: {e}"
        info = headers[path]
        if info is None:
            missing.append(path)
        elif isinstance(info, str):
            unreadable.append(f"{path}: {info}")
        else:
            seconds = clip_seconds(item, info)
            durations.append(seconds)
            seconds_by_split[split] += seconds
        for name, texts in zip(("captions", "questions", "answers"), item_texts(item)):
            words[name] += [len(t.split()) for t in texts]
            if tokenizer is not None:
                tokens[name] += [len(tokenizer.encode_text(t)) for t in texts]
    out = {
        "manifests": [str(p) for p in paths],
        "items": len(items),
        "splits": dict(sorted(by_split.items())),
        "tasks": dict(sorted(by_task.items())),
        "audio_hours": round(sum(seconds_by_split.values()) / 3600, 4),
        "audio_hours_by_split": {s: round(v / 3600, 4) for s, v in sorted(seconds_by_split.items())},
        "clip_seconds": distribution(durations),
        "words": {k: distribution(v) for k, v in words.items() if v},
        "missing_audio": len(missing),
        "unreadable_audio": len(unreadable),
    }
    if tokenizer is not None:
        out["text_tokens"] = {k: {**distribution(v), "total": int(sum(v))} for k, v in tokens.items() if v}
    if missing:
        out["missing_listed"] = missing[:max_listed]
    if unreadable:
        out["unreadable_listed"] = unreadable[:max_listed]
    return out
