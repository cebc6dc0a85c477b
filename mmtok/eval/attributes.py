"""Attribute accuracy: does a generated caption name the right instrument, tempo, key, meter?

Captions are parsed back into attribute values with the demo corpus's own parser
(`mmtok.data.captions.parse_caption`), and compared with the manifest's attribute fields. Each
score sits next to the majority-class baseline (always answering the most frequent true value of
the evaluated manifest): a captioner that has not listened to the audio scores that much.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

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


@dataclass
class AttributeScore:
    accuracy: float  # share of captions whose parsed value matches the truth
    majority_baseline: float  # accuracy of always answering the most frequent true value
    majority_class: str  # that value ("field=value" per field when a group has several fields)
    n: int  # items with a true value for this attribute (the denominator of both)

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


@lru_cache(maxsize=1)
def _instrument_names() -> tuple[re.Pattern, dict[str, str]]:
    from mmtok.data.captions import GM_INSTRUMENTS

    to_gm = {n.lower(): gm for gm, names in GM_INSTRUMENTS.values() for n in (gm, *names)}
    alternation = "|".join(re.escape(n) for n in sorted(to_gm, key=len, reverse=True))  # longest first
    return re.compile(rf"\b({alternation})\b", re.I), to_gm


def with_key_mode(attrs: Mapping) -> dict:
    out = dict(attrs)
    if attrs.get("key") and attrs.get("mode"):
        out["key_mode"] = f"{attrs['key']} {attrs['mode']}"
    return out


def parse_demo_caption(text: str) -> dict:
    """`mmtok.data.captions.parse_caption` plus the instrument's GM name and key_mode."""
    from mmtok.data.captions import parse_caption

    out = parse_caption(text)
    pattern, to_gm = _instrument_names()
    if m := pattern.search(text):
        out["instrument"] = to_gm[m.group(1).lower()]
    return with_key_mode(out)


def demo_attribute_accuracy(captions: Sequence[str], records: Sequence[Mapping]) -> dict[str, AttributeScore]:
    """Attribute accuracy on the demo corpus (records: its manifest lines)."""
    return attribute_accuracy(captions, [with_key_mode(r) for r in records], DEMO_GROUPS, parse_demo_caption)


def attribute_accuracy(
    captions: Sequence[str],
    truths: Sequence[Mapping],
    groups: Mapping[str, Sequence[str]],
    parse: Callable[[str], Mapping],
) -> dict[str, AttributeScore]:
    """Score each attribute group over `captions[i]` vs manifest record `truths[i]`.

    `groups` maps a reported name to the manifest fields that count for it: a caption is right
    when it names the true value of ANY of them (e.g. "instrument": ("family", "instrument") accepts
    "a violin piece" and "a string piece" for a violin). Values compare case-insensitively.
    Items whose record has none of a group's fields are left out of that group.
    """
    if len(captions) != len(truths):
        raise ValueError(f"{len(captions)} captions but {len(truths)} manifest records")
    parsed = [{k: _norm(v) for k, v in parse(c).items()} for c in captions]
    scores: dict[str, AttributeScore] = {}
    for name, fields in groups.items():
        rows = [
            (p, t)
            for p, t in zip(parsed, ({f: _norm(r.get(f)) for f in fields} for r in truths))
            if any(v is not None for v in t.values())
        ]
        if not rows:
            continue
        majority = {f: Counter(t[f] for _, t in rows if t[f] is not None).most_common(1) for f in fields}
        majority = {f: m[0][0] for f, m in majority.items() if m}

        def hit(answer: Mapping, truth: Mapping) -> bool:
            return any(truth[f] is not None and answer.get(f) == truth[f] for f in fields)

        scores[name] = AttributeScore(
            accuracy=sum(hit(p, t) for p, t in rows) / len(rows),
            majority_baseline=sum(hit(majority, t) for _, t in rows) / len(rows),
            majority_class=(
                next(iter(majority.values())) if len(majority) == 1
                else ", ".join(f"{f}={v}" for f, v in majority.items())
            ),
            n=len(rows),
        )
    return scores
