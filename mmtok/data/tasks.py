"""The tasks a manifest item can be for, what each needs, and the textual forms they share.

    caption   (no `task`, or "caption")  audio + text: captions, and text <-> music
    qa        audio + qa: [{"q", "a"}, ...]: questions about the clip and their answers
    segments  audio + segments: [{"start_s", "end_s", "text"}, ...]: a caption per section
    playlist  audios: [2..8 paths] + text: one description of the set

`check_item` validates one item's task fields (the manifest reader calls it on every line, the
shard writer again with the audio's length). Time-stamped captions are plain text in one fixed
form, `0:00-0:05 first section. 0:05-0:12 second section.`, written by `format_segments` and read
back by `parse_segments`: the digits are already SentencePiece pieces of every caption
vocabulary, so no tokenizer needs new ids for times, and any answer the model writes parses.
Times are whole seconds (`M:SS`, rounded): a boundary is off by at most half a second in the text.
"""

from __future__ import annotations

import math
import re

TASKS = ("caption", "qa", "segments", "playlist")
PLAYLIST_SIZE = (2, 8)  # clips per playlist, inclusive
# What a time-stamped section says at inference: "joint", the text the model writes beside the stamps
# (one pass); "recaption", the model's single-clip caption of the section's own audio (one more pass
# over the sections the stamps delimit: the stamps place the boundaries, the caption task names
# what is there).
SECTION_TEXTS = ("joint", "recaption")


class TaskItemError(ValueError):
    """An item's task fields are unusable (the message names the item)."""


def task_of(item) -> str:
    """The task of a manifest item or a shard sample's metadata (no `task`: caption)."""
    task = item.get("task") or "caption"
    return task


def item_name(item: dict, where: str = "") -> str:
    """How errors name an item: `file:line` (when given) and its id or audio."""
    name = item.get("id") or item.get("audio") or (item.get("audios") or ["?"])[0]
    return f"{where}: item {name!r}" if where else f"item {name!r}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_segments(segments, where: str, duration: float | None = None) -> list[dict]:
    """Sections in time order, each {start_s, end_s, text}; ends within `duration` when given.
    Raises TaskItemError naming `where` and the section."""
    if not isinstance(segments, list) or not segments:
        raise TaskItemError(f"{where}: 'segments' must be a non-empty list of {{start_s, end_s, text}}")
    prev_end = 0.0
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not _number(seg.get("start_s")) or not _number(seg.get("end_s")):
            raise TaskItemError(f"{where}: segment {i} must have numeric start_s and end_s, got {str(seg)[:80]}")
        if not isinstance(seg.get("text"), str) or not seg["text"].strip():
            raise TaskItemError(f"{where}: segment {i} has no text")
        a, b = float(seg["start_s"]), float(seg["end_s"])
        if a < 0 or b <= a:
            raise TaskItemError(f"{where}: segment {i} runs from {a:g} s to {b:g} s: not a time span")
        if a < prev_end - 1e-6:
            raise TaskItemError(f"{where}: segment {i} starts at {a:g} s, before segment {i - 1} ends "
                                f"({prev_end:g} s): segments must be in time order and not overlap")
        if duration is not None and b > duration + 0.05:
            raise TaskItemError(f"{where}: segment {i} ends at {b:g} s, beyond the audio ({duration:.2f} s)")
        prev_end = b
    return segments


def check_item(item: dict, where: str) -> None:
    """Validate the task fields of one manifest item (`where`: "file:line"); TaskItemError names it."""
    task = task_of(item)
    name = item_name(item, where)
    if task not in TASKS:
        raise TaskItemError(f"{name}: unknown task {task!r} (one of {', '.join(TASKS)})")
    if task == "playlist":
        audios = item.get("audios")
        lo, hi = PLAYLIST_SIZE
        if not isinstance(audios, list) or not all(isinstance(a, str) and a.strip() for a in audios):
            raise TaskItemError(f"{name}: a playlist item needs 'audios', a list of {lo} to {hi} paths")
        if not lo <= len(audios) <= hi:
            raise TaskItemError(f"{name}: a playlist holds {lo} to {hi} clips, this one {len(audios)}")
        return
    if not isinstance(item.get("audio"), str) or not item["audio"].strip():
        what = {"qa": "a question needs its audio", "segments": "sections need their audio"}.get(task, "")
        raise TaskItemError(f"{name}: {what + ': ' if what else ''}missing or empty string field 'audio'")
    if task == "qa":
        turns = item.get("qa")
        if not isinstance(turns, list) or not turns:
            raise TaskItemError(f"{name}: a qa item needs 'qa', a non-empty list of {{\"q\", \"a\"}}")
        for i, t in enumerate(turns):
            if not (isinstance(t, dict) and isinstance(t.get("q"), str) and t["q"].strip()
                    and isinstance(t.get("a"), str) and t["a"].strip()):
                raise TaskItemError(f"{name}: qa turn {i} needs a non-empty question 'q' and answer 'a'")
    elif task == "segments":
        check_segments(item.get("segments"), name)


# ---- time-stamped captions ------------------------------------------------------------------------
def format_time(seconds: float) -> str:
    """Seconds -> `M:SS`, rounded to the whole second."""
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}"


def format_segments(segments) -> str:
    """[{start_s, end_s, text}] -> `0:00-0:05 text. 0:05-0:12 text.` (one line)."""
    parts = []
    for seg in segments:
        text = " ".join(str(seg["text"]).split())
        parts.append(f"{format_time(seg['start_s'])}-{format_time(seg['end_s'])} {text}")
    return " ".join(parts)


_STAMP = re.compile(r"(\d{1,3}):([0-5]\d)\s*-\s*(\d{1,3}):([0-5]\d)")


def parse_segments(text: str) -> list[dict]:
    """The sections a time-stamped caption states: [{start_s, end_s, text}], in the order written.
    Text before the first stamp is ignored; a caption without stamps gives []."""
    marks = list(_STAMP.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        a = int(m.group(1)) * 60 + int(m.group(2))
        b = int(m.group(3)) * 60 + int(m.group(4))
        out.append({"start_s": float(a), "end_s": float(b), "text": text[m.end():end].strip()})
    return out


def shift_segments(segments, start_s: float, end_s: float, min_seconds: float = 0.5) -> list[dict]:
    """The sections seen through the window [start_s, end_s), re-timed to start at 0; sections
    that keep less than `min_seconds` of their span are left out."""
    out = []
    for seg in segments:
        a, b = max(float(seg["start_s"]), start_s), min(float(seg["end_s"]), end_s)
        if b - a >= min_seconds:
            out.append({**seg, "start_s": a - start_s, "end_s": b - start_s})
    return out
