"""Time-stamped captions: how many sections, where their boundaries are, what each section is.

For each item, the model's stamped caption (`Captioner.timestamps_codes`) is parsed into
sections and compared with the item's `segments`:

- **sections right**: share of items whose number of sections is the true number;
- **boundary error** (seconds): for every true inner boundary (the end of each section but the
  last), the distance to the nearest edge (start or end) of a predicted section, averaged over all
  boundaries of all items (`boundary_mae_s`); an item whose caption has no stamp counts as one
  section over the whole clip. Over the items with the right number of sections, the distance
  of the i-th true inner boundary to the i-th predicted one (`boundary_mae_s_count_right`);
- **per-section attributes**: each true section is matched with the predicted section that
  overlaps it most; the grammar parses the matched text and compares it with the section's fields
  (a section in the manifest may carry the facts the grammar scores, e.g. `family`, `tempo_class`);
- **caption metrics per section**: the matched text against the section's text (an unmatched
  section is scored against an empty prediction);
- both for each section's text as the model writes it beside the stamps (`joint`) and for the
  caption of the predicted section's own audio (`recaptioned`: `Captioner.recaption_sections`),
  the two `section_text` settings of the captioner, from one pass of stamps;
- **baseline**: the same measures for a segmentation that ignores the audio (the most common true
  number of sections, of equal length).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mmtok.eval.attributes import CaptionGrammar
from mmtok.eval.caption_metrics import caption_metrics
from mmtok.eval.task_items import encode_items, task_items


def inner_boundaries(segments: Sequence[dict]) -> list[float]:
    return [float(s["end_s"]) for s in segments[:-1]]


def boundary_errors(pred: Sequence[dict], true: Sequence[dict], duration: float) -> list[float]:
    """|true inner boundary - nearest predicted section edge| for each true inner boundary."""
    if not pred:
        pred = [{"start_s": 0.0, "end_s": duration}]
    edges = sorted({float(s["start_s"]) for s in pred} | {float(s["end_s"]) for s in pred})
    return [min(abs(b - e) for e in edges) for b in inner_boundaries(true)]


def overlap(a: dict, b: dict) -> float:
    return max(0.0, min(a["end_s"], b["end_s"]) - max(a["start_s"], b["start_s"]))


def match_sections(pred: Sequence[dict], true: Sequence[dict]) -> list[dict | None]:
    """For each true section, the predicted section overlapping it most (None: none overlaps)."""
    out = []
    for t in true:
        best = max(pred, key=lambda p: overlap(p, t), default=None)
        out.append(best if best is not None and overlap(best, t) > 0 else None)
    return out


def segment_metrics(preds: Sequence[Sequence[dict]], trues: Sequence[Sequence[dict]],
                    durations: Sequence[float]) -> dict:
    """Section count and boundary measures over items (see the module docstring)."""
    right = [len(p) == len(t) for p, t in zip(preds, trues)]
    errors = [e for p, t, d in zip(preds, trues, durations) for e in boundary_errors(p, t, d)]
    matched = [abs(a - b) for p, t, ok in zip(preds, trues, right) if ok
               for a, b in zip(inner_boundaries(p), inner_boundaries(t))]
    return {"items": len(trues), "sections_right": sum(right) / max(len(right), 1),
            "boundary_mae_s": sum(errors) / len(errors) if errors else None, "boundaries": len(errors),
            "boundary_mae_s_count_right": sum(matched) / len(matched) if matched else None,
            "unparsed": sum(not p for p in preds)}


def even_sections(n: int, duration: float) -> list[dict]:
    """`n` sections of equal length over `duration` seconds (the trivial segmentation)."""
    return [{"start_s": duration * i / n, "end_s": duration * (i + 1) / n, "text": ""} for i in range(n)]


def trivial_baseline(trues: Sequence[Sequence[dict]], durations: Sequence[float]) -> dict:
    """The measures of a segmentation that ignores the audio: the most common true number of
    sections, of equal length."""
    counts = [len(t) for t in trues]
    n = max(set(counts), key=lambda k: (counts.count(k), -k))
    return {"sections": n, **segment_metrics([even_sections(n, d) for d in durations], trues, durations)}


def section_scores(preds: Sequence[Sequence[dict]], trues: Sequence[Sequence[dict]],
                   grammar: CaptionGrammar | None, meteor: bool) -> dict:
    """Caption metrics (and attributes, with a grammar) of the predicted section that overlaps
    each true section most, against that section."""
    pairs = [(m, t) for p, ts in zip(preds, trues) for m, t in zip(match_sections(p, ts), ts)]
    texts = [m["text"] if m else "" for m, _ in pairs]
    out = {"section_caption_metrics": caption_metrics(texts, [t["text"] for _, t in pairs], meteor=meteor).corpus}
    if grammar is not None:
        out["section_attributes"] = {k: v.to_dict() for k, v in grammar.score(texts, [t for _, t in pairs]).items()}
    return out


def evaluate_segments(captioner, manifest, grammar: CaptionGrammar | None = None, limit: int | None = None,
                      meteor: bool = True) -> dict:
    items = task_items(manifest, "segments", limit)
    t0 = time.perf_counter()
    codes, kept, skipped = encode_items(items, lambda item: captioner.encode(item["audio"]), manifest, "segments")
    outputs = captioner.timestamps_codes(codes, "joint")
    elapsed = time.perf_counter() - t0
    recaptioned = captioner.recaption_sections(codes, [segs for _, segs in outputs])
    elapsed_recaption = time.perf_counter() - t0 - elapsed
    fr = captioner.tokenizer.frame_rate
    # Only the seconds the model heard are scored: sections are cut to the encoded prefix.
    trues, durations = [], []
    for item, c in zip(kept, codes):
        seen = c.n_frames / fr
        trues.append([{**s, "end_s": min(float(s["end_s"]), seen)} for s in item["segments"]
                      if float(s["start_s"]) < seen - 0.5] or item["segments"][:1])
        durations.append(seen)
    preds = [segs for _, segs in outputs]
    report = {"manifest": str(manifest), **segment_metrics(preds, trues, durations),
              "baseline": trivial_baseline(trues, durations)}
    report.update(section_scores(preds, trues, grammar, meteor))
    report["recaptioned"] = section_scores(recaptioned, trues, grammar, meteor)
    report["timing_s"] = {"caption": round(elapsed, 2), "recaption": round(elapsed_recaption, 2)}
    report["samples"] = [{"audio": item["audio"], "caption": text, "predicted": p, "recaptioned": r, "true": t}
                         for item, (text, p), r, t in zip(kept, outputs, recaptioned, trues)]
    report["skipped"] = skipped
    return report
