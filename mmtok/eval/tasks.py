"""One evaluation report over every task a checkpoint does (`mmtok eval-tasks`).

    report = evaluate_tasks(captioner, qa="qa.jsonl", segments="segments.jsonl", playlist="playlist.jsonl",
                            retrieval="test.jsonl", music="test.jsonl", grammars=...)
    write_tasks_report("runs/demo/eval_tasks", report)       # tasks.json + tasks.md

Each part runs only when its manifest is given. Text -> music is scored by listening with the
same model: music is generated for each caption of the manifest (`generate_codes_batch`, the
codes, not decoded), captioned back, and the captions' attributes are compared with the
manifest's (the round trip's attribute accuracy, beside the majority baseline). It says whether
the music carries what the caption asked for, as far as the model's own ears tell.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mmtok.atomic import write_text_atomic
from mmtok.eval.attributes import CaptionGrammar
from mmtok.eval.playlist import evaluate_playlists
from mmtok.eval.qa import evaluate_qa
from mmtok.eval.retrieval import evaluate_retrieval, read_retrieval_set
from mmtok.eval.segments import evaluate_segments
from mmtok.eval.task_items import task_items
from mmtok.generate.asker import Asker
from mmtok.generate.music import generate_codes_batch
from mmtok.generate.sampling import GenerationConfig


def evaluate_music(captioner, manifest, grammar: CaptionGrammar | None, seconds: float = 2.0, limit: int = 16,
                   seed: int = 0, generation: GenerationConfig | None = None) -> dict:
    items = task_items(manifest, "caption", limit)
    t0 = time.perf_counter()
    gen = generation or GenerationConfig(top_k=250, temperature=1.0, cfg_coef=3.0, seed=seed)
    codes = generate_codes_batch(captioner.model, captioner.tokenizer, [i["text"] for i in items], seconds, gen)
    heard = captioner.caption_codes(codes)
    report = {"manifest": str(manifest), "n": len(items), "seconds": seconds, "seed": seed}
    if grammar is not None:
        report["round_trip_attributes"] = {k: v.to_dict() for k, v in grammar.score(heard, items).items()}
    report["timing_s"] = {"generate_and_caption": round(time.perf_counter() - t0, 2)}
    report["samples"] = [{"prompt": i["text"], "heard": h} for i, h in zip(items, heard)]
    return report


def evaluate_tasks(captioner, qa=None, segments=None, playlist=None, retrieval=None, music=None,
                   grammars: dict | None = None, limit: int | None = None, meteor: bool = True,
                   music_seconds: float = 2.0, music_limit: int = 16) -> dict:
    """{"qa", "segments", "playlist", "retrieval", "music"}: each part's report, for the manifests
    given. `grammars`: {"caption": CaptionGrammar, "qa": CaptionGrammar, "playlist": SetGrammar}.
    `limit`: the first N items of each manifest (retrieval: the first N clips); music: the first
    `music_limit` captions."""
    grammars = grammars or {}
    report = {"checkpoint": str(getattr(captioner, "source", "<in-memory model>"))}
    if qa is not None:
        asker = Asker(captioner.model, captioner.tokenizer, captioner.config)
        report["qa"] = evaluate_qa(asker, qa, grammars.get("qa"), limit, meteor)
    if segments is not None:
        report["segments"] = evaluate_segments(captioner, segments, grammars.get("caption"), limit, meteor)
    if playlist is not None:
        report["playlist"] = evaluate_playlists(captioner, playlist, grammars.get("playlist"), limit, meteor)
    if retrieval is not None:
        clips, captions, truth = read_retrieval_set(retrieval)
        if limit is not None:
            keep = [j for j, t in enumerate(truth) if t is not None and t < limit]
            clips, captions, truth = clips[:limit], [captions[j] for j in keep], [truth[j] for j in keep]
        report["retrieval"] = evaluate_retrieval(captioner, clips, captions, truth)
    if music is not None:
        report["music"] = evaluate_music(captioner, music, grammars.get("caption"), music_seconds, music_limit)
    return report


def _rows(scores: dict, fmt: str = "{:.3f}") -> list[str]:
    lines = ["| measure | value | majority / random |", "|---|---:|---:|"]
    for name, s in scores.items():
        base = s.get("majority_baseline")
        lines.append(f"| {name} | {fmt.format(s['accuracy'])} | {'' if base is None else fmt.format(base)} |")
    return lines


def markdown_tasks(report: dict) -> str:
    lines = [f"# Tasks of `{report.get('checkpoint', '?')}`", ""]
    if "qa" in report:
        q = report["qa"]
        lines += ["## Question answering", "", f"{q['n_questions']} questions about {q['n_items']} clips; "
                  f"exact match {q['exact_match']:.3f}.", "", "| question type | n | exact match | attribute accuracy "
                  "| majority | on topic |", "|---|---:|---:|---:|---:|---:|"]
        for t, n in q["questions_by_type"].items():
            a = q.get("attributes_by_type", {}).get(t)
            acc = f"{a['accuracy']:.3f} | {a['majority_baseline']:.3f}" if a else " | "
            topic = q.get("on_topic_by_type", {}).get(t)
            lines.append(f"| {t} | {n} | {q['exact_match_by_type'][t]:.3f} | {acc} | "
                         f"{'' if topic is None else f'{topic:.3f}'} |")
        lines += ["", "Answers: " + ", ".join(f"{k} {v:.3f}" for k, v in q["answer_metrics"].items()), ""]
    if "segments" in report:
        s = report["segments"]
        mae = "-" if s["boundary_mae_s"] is None else f"{s['boundary_mae_s']:.2f} s"
        b = s["baseline"]
        b_mae = "-" if b["boundary_mae_s"] is None else f"{b['boundary_mae_s']:.2f} s"
        lines += ["## Time-stamped captions", "", f"{s['items']} items: section count right {s['sections_right']:.3f}, "
                  f"boundary error {mae}, unparsed {s['unparsed']}. Trivial segmentation ({b['sections']} equal "
                  f"sections): count right {b['sections_right']:.3f}, boundary error {b_mae}.", ""]
        for title, scores in (("Each section's text as written beside the stamps", s),
                              ("Each section captioned on its own audio (`--section-text recaption`)",
                               s.get("recaptioned"))):
            if scores is None:
                continue
            lines += [f"{title}:", ""]
            if scores.get("section_attributes"):
                lines += _rows(scores["section_attributes"]) + [""]
            lines += ["Sections: " + ", ".join(f"{k} {v:.3f}" for k, v in scores["section_caption_metrics"].items()),
                      ""]
    if "playlist" in report:
        p = report["playlist"]
        lines += ["## Playlist captions", "", f"{p['n_playlists']} playlists: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in p["caption_metrics"].items()), ""]
        if p.get("set_attributes"):
            lines += _rows(p["set_attributes"]) + [""]
    if "retrieval" in report and "directions" in report["retrieval"]:
        lines += ["## Retrieval (likelihood)", "", "| direction | R@1 | R@5 | R@10 | mAP@10 | median rank |",
                  "|---|---:|---:|---:|---:|---:|"]
        for d, r in report["retrieval"]["directions"].items():
            for label, m in ((d, r["metrics"]), (f"{d} (random)", r["random"])):
                lines.append(f"| {label} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['R@10']:.3f} | {m['mAP@10']:.3f} | "
                             f"{m['median_rank']:.1f} |")
        lines.append("")
    if "music" in report:
        m = report["music"]
        lines += ["## Text -> music (captioned back by the same model)", "", f"{m['n']} prompts, {m['seconds']:g} s each.", ""]
        if m.get("round_trip_attributes"):
            lines += _rows(m["round_trip_attributes"]) + [""]
    return "\n".join(lines + examples(report))


def examples(report: dict, n: int = 3) -> list[str]:
    """A few outputs of each task beside their references (markdown lines)."""
    lines = []
    if "qa" in report:
        lines += ["## Examples", "", "Question answering:", ""]
        lines += [f"- {r['question']} → {r['answer']!r} (reference {r['reference']!r})" for r in report["qa"]["samples"][:n]]
        lines.append("")
    if "segments" in report:
        lines += ["Time-stamped captions:", ""]
        for r in report["segments"]["samples"][:n]:
            true = " ".join(f"{t['start_s']:.1f}-{t['end_s']:.1f} s {t['text']}" for t in r["true"])
            lines.append(f"- {r['caption']!r} (true: {true})")
        lines.append("")
    if "playlist" in report:
        lines += ["Playlist captions:", ""]
        lines += [f"- {r['caption']!r} (reference {r['reference']!r})" for r in report["playlist"]["samples"][:n]]
        lines.append("")
    if "music" in report:
        lines += ["Text → music, captioned back:", ""]
        lines += [f"- {r['prompt']!r} → {r['heard']!r}" for r in report["music"]["samples"][:n]]
        lines.append("")
    return lines


def write_tasks_report(out_dir, report: dict, stem: str = "tasks"):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{stem}.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / f"{stem}.md", markdown_tasks(report))
    return out / f"{stem}.json", out / f"{stem}.md"
