"""Attribute accuracy: does a generated caption name the right instrument, tempo, key, meter?

Captions are parsed back into attribute values by a `CaptionGrammar` (the parser belongs to
whoever owns the caption wording: the demo's is `mmtok.demo.attributes.DEMO_GRAMMAR`) and compared
with the manifest's attribute fields. Each score sits next to the majority-class baseline (always
answering the most frequent true value of the evaluated manifest): a captioner that has not
listened to the audio scores that much.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass


@dataclass
class AttributeScore:
    accuracy: float  # share of captions whose parsed value matches the truth
    majority_baseline: float  # accuracy of always answering the most frequent true value
    majority_class: str  # that value ("field=value" per field when a group has several fields)
    n: int  # items with a true value for this attribute (the denominator of both)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CaptionGrammar:
    """How attribute values are read out of captions and matched with manifest fields."""

    fields: tuple[str, ...]  # the manifest fields this grammar scores (for "no field present" reports)
    groups: Mapping[str, Sequence[str]]  # reported name -> manifest fields that count (see attribute_accuracy)
    parse: Callable[[str], Mapping]  # caption -> {field: value} it names
    prepare: Callable[[Mapping], Mapping] = dict  # manifest record -> truths (e.g. derive key_mode)

    def score(self, captions: Sequence[str], records: Sequence[Mapping]) -> dict[str, AttributeScore]:
        return attribute_accuracy(captions, [self.prepare(r) for r in records], self.groups, self.parse)


def _norm(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


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

        def hit(answer: Mapping, truth: Mapping, fields=fields) -> bool:
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
