"""The demo caption grammar's attributes: reading instrument, tempo class, key, mode and meter
back out of captions worded by `mmtok.demo.captions`, for `mmtok eval --attributes`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from mmtok.demo.captions import GM_INSTRUMENTS, parse_caption
from mmtok.eval.attributes import AttributeScore, CaptionGrammar

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
