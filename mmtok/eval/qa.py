"""Question answering: exact match and attribute accuracy per question type, and caption metrics
of the answers.

A qa manifest item holds `qa: [{"q", "a", "type"?}, ...]`. Every question is asked about its
clip (`mmtok.generate.asker.Asker`) and scored:

- **exact match**: the answer equals the reference after lower-casing, dropping punctuation and
  collapsing spaces (overall, and per question type);
- **attribute accuracy per type**, where the answer is a known fact: a turn's `type` names a group
  of the answer grammar (e.g. `instrument`, `family`, `tempo_class`, `key`, `mode`, `meter`), the
  grammar parses the answer and the value is compared with the item's fields, beside the
  majority baseline (`mmtok.eval.attributes`). Whole-sentence and short answers both parse;
- **on topic per type**: the share of answers that name some value of the asked type at all,
  right or wrong; a low share means the model answers another question than the one asked;
- **BLEU / METEOR / ROUGE-L / CIDEr** of the answers against the reference answers: over the
  free-form answers (turns without a known type), and over all answers.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

from mmtok.eval.attributes import CaptionGrammar, attribute_accuracy
from mmtok.eval.caption_metrics import caption_metrics
from mmtok.eval.task_items import encode_items, task_items


def normalize_answer(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s#/]", " ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def on_topic(answers, fields, parse) -> float:
    """Share of `answers` that name a value of any of `fields` (as `parse` reads them)."""
    return sum(any(parse(a).get(f) is not None for f in fields) for a in answers) / max(1, len(answers))


def evaluate_qa(asker, manifest, grammar: CaptionGrammar | None = None, limit: int | None = None,
                meteor: bool = True) -> dict:
    """Ask every question of the manifest's qa items; the report dict (see the module docstring)."""
    items = task_items(manifest, "qa", limit)
    t0 = time.perf_counter()

    def encode(item):
        questions = [t["q"] for t in item["qa"]]
        return asker.encode(item["audio"], None, asker.frames_for(questions)), questions

    pairs, kept, skipped = encode_items(items, encode, manifest, "qa")
    answers = asker.answer_codes(pairs)
    t_answer = time.perf_counter() - t0
    rows = [{"audio": item["audio"], "question": t["q"], "reference": t["a"], "answer": a, "type": t.get("type"),
             "item": item} for item, ans in zip(kept, answers) for t, a in zip(item["qa"], ans)]
    for r in rows:
        r["exact"] = exact_match(r["answer"], r["reference"])
    by_type = defaultdict(list)
    for r in rows:
        by_type[r["type"] or "free"].append(r)
    report = {"manifest": str(manifest), "n_items": len(kept), "n_questions": len(rows),
              "exact_match": sum(r["exact"] for r in rows) / len(rows),
              "exact_match_by_type": {t: sum(r["exact"] for r in rs) / len(rs) for t, rs in sorted(by_type.items())},
              "questions_by_type": {t: len(rs) for t, rs in sorted(by_type.items())}}
    if grammar is not None:
        known = {t: rs for t, rs in by_type.items() if t in grammar.groups}
        report["attributes_by_type"] = {
            t: score.to_dict() for t, rs in sorted(known.items())
            for score in attribute_accuracy([r["answer"] for r in rs], [grammar.prepare(r["item"]) for r in rs],
                                            {t: grammar.groups[t]}, grammar.parse).values()}
        report["on_topic_by_type"] = {t: on_topic([r["answer"] for r in rs], grammar.groups[t], grammar.parse)
                                      for t, rs in sorted(known.items())}
    free = [r for r in rows if grammar is None or (r["type"] or "free") not in grammar.groups]
    report["answer_metrics"] = caption_metrics([r["answer"] for r in rows], [r["reference"] for r in rows],
                                               meteor=meteor).corpus
    if free and len(free) < len(rows):
        report["free_form_metrics"] = caption_metrics([r["answer"] for r in free], [r["reference"] for r in free],
                                                      meteor=meteor).corpus
    report["n_free_form"] = len(free)
    report["timing_s"] = {"answer": round(t_answer, 2)}
    report["samples"] = [{k: v for k, v in r.items() if k != "item"} for r in rows]
    report["skipped"] = skipped
    return report
