"""The demo caption grammar's attributes: reading instrument, tempo class, key, mode and meter
back out of captions worded by `mmtok.demo.captions`, for `mmtok eval --attributes`; and the
grammars of the demo's task data (`mmtok.demo.tasks`): answers to its questions and its playlist
captions, for `mmtok eval-tasks`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from mmtok.demo.captions import GM_FAMILIES, GM_INSTRUMENTS, TEMPO_WORDS, parse_caption
from mmtok.eval.attributes import AttributeScore, CaptionGrammar
from mmtok.eval.playlist import SetGrammar

# Reported name -> manifest fields that count (a caption is right if it names ANY of them). The
# demo manifests carry instrument (GM name), family, tempo_class, key, mode and meter;
# key_mode is derived ("D minor") so that key and mode can be scored together.
DEMO_GROUPS = {
    "instrument": ("family", "instrument"),  # the instrument, or at least its GM family
    "instrument_name": ("instrument",),  # exactly the instrument
    "tempo_class": ("tempo_class",),
    "key_mode": ("key_mode",),
    "mode": ("mode",),
    "meter": ("meter",),
}
DEMO_FIELDS = ("family", "instrument", "tempo_class", "key", "mode", "meter")  # manifest fields scored


@lru_cache(maxsize=1)
def _instrument_names() -> tuple[re.Pattern, dict[str, str]]:
    to_gm = {n.lower(): gm for gm, names in GM_INSTRUMENTS.values() for n in (gm, *names)}
    alternation = "|".join(re.escape(n) for n in sorted(to_gm, key=len, reverse=True))  # longest first
    return re.compile(rf"\b({alternation})\b", re.I), to_gm


def with_key_mode(attrs: Mapping) -> dict:
    out = dict(attrs)
    if attrs.get("key") and attrs.get("mode"):
        out["key_mode"] = f"{attrs['key']} {attrs['mode']}"
    return out


def parse_demo_caption(text: str) -> dict:
    """`mmtok.demo.captions.parse_caption` plus the instrument's GM name and key_mode."""
    out = parse_caption(text)
    pattern, to_gm = _instrument_names()
    if m := pattern.search(text):
        out["instrument"] = to_gm[m.group(1).lower()]
    return with_key_mode(out)


DEMO_GRAMMAR = CaptionGrammar(fields=DEMO_FIELDS, groups=DEMO_GROUPS, parse=parse_demo_caption,
                              prepare=with_key_mode)


def demo_attribute_accuracy(captions: Sequence[str], records: Sequence[Mapping]) -> dict[str, AttributeScore]:
    """Attribute accuracy on the demo corpus (records: its manifest lines)."""
    return DEMO_GRAMMAR.score(captions, records)


# ---- answers to questions and playlist captions -------------------------------------------------
_MODE_RE = re.compile(r"\b(major|minor)\b", re.I)


@lru_cache(maxsize=1)
def _family_pattern() -> re.Pattern:
    return re.compile(r"\b(" + "|".join(re.escape(f) for f in sorted(GM_FAMILIES, key=len, reverse=True)) + r")\b", re.I)


def parse_demo_answer(text: str) -> dict:
    """What an answer to a demo question states: the caption attributes, plus a family named by
    its own word ("Strings.", "the reed family") and a mode without a key ("Minor.")."""
    out = parse_demo_caption(text)
    if "family" not in out and (m := _family_pattern().search(text)):
        out["family"] = m.group(1).lower()
    if "mode" not in out and (m := _MODE_RE.search(text)):
        out["mode"] = m.group(1).lower()
    return with_key_mode(out)


# Question type -> manifest fields its answer is checked against (`mmtok.demo.tasks` writes the types).
DEMO_QA_GROUPS = {"instrument": ("instrument",), "family": ("family",), "tempo_class": ("tempo_class",),
                  "key": ("key_mode",), "mode": ("mode",), "meter": ("meter",)}
DEMO_QA_GRAMMAR = CaptionGrammar(fields=DEMO_FIELDS, groups=DEMO_QA_GROUPS, parse=parse_demo_answer,
                                 prepare=with_key_mode)

_MOSTLY_RE = re.compile(r"\bmostly (?:at an? )?(" + "|".join(
    re.escape(w) for w in sorted({w for ws in TEMPO_WORDS.values() for w in ws}, key=len, reverse=True)) + r")\b", re.I)
_WORD_TEMPO = {w: c for c, ws in TEMPO_WORDS.items() for w in ws}


def parse_demo_playlist(text: str) -> dict:
    """A playlist caption's set-level facts: every instrument it names (GM names) and the
    prevailing tempo class ("mostly slow"; else the first tempo word)."""
    pattern, to_gm = _instrument_names()
    out: dict = {"instruments": {to_gm[m.group(1).lower()] for m in pattern.finditer(text)}}
    if m := _MOSTLY_RE.search(text):
        out["tempo_class"] = _WORD_TEMPO[m.group(1).lower()]
    elif "tempo_class" in (p := parse_caption(text)):
        out["tempo_class"] = p["tempo_class"]
    return out


DEMO_PLAYLIST_GRAMMAR = SetGrammar(parse=parse_demo_playlist)
DEMO_TASK_GRAMMARS = {"caption": DEMO_GRAMMAR, "qa": DEMO_QA_GRAMMAR, "playlist": DEMO_PLAYLIST_GRAMMAR}
