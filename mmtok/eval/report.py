"""Write an evaluation report as JSON (for machines) and a Markdown table (for people).

The report is a plain dict (see `mmtok.eval.evaluate.evaluate` for its keys); both files are written
aside and renamed, so a crash never leaves a half-written report under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmtok.atomic import write_text_atomic

MAX_SAMPLE_ROWS = 20  # captions shown in the Markdown file (the JSON keeps all of them)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_report(report: dict) -> str:
    lines = [f"# Evaluation of `{report.get('checkpoint', '?')}`", ""]
    if "manifest" in report:
        lines += [f"Manifest `{report['manifest']}`, {report.get('n_captions', '?')} captions.", ""]
    if report.get("caption_metrics"):
        lines += ["## Caption metrics (pycocoevalcap, PTB-tokenized)", "", "| metric | score |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in report["caption_metrics"].items()]
        lines.append("")
    if report.get("perplexity"):
        lines += ["## Perplexity on held-out shards (by target modality)", ""]
        lines += ["| targets | loss (nats/token) | perplexity | tokens |", "|---|---:|---:|---:|"]
        for name, p in report["perplexity"].items():
            loss, ppl = ("-", "-") if p["loss"] is None else (f"{p['loss']:.4f}", f"{p['perplexity']:.2f}")
            lines.append(f"| {name} | {loss} | {ppl} | {p['tokens']} |")
        lines.append("")
    if report.get("attributes") == {}:  # asked for, but the manifest has no attribute fields
        fields = ", ".join(report.get("attribute_fields", []))
        lines += ["## Attributes named correctly in captions", "",
                  f"No manifest item has any of the fields {fields}: nothing to score.", ""]
    elif report.get("attributes"):
        lines += ["## Attributes named correctly in captions", ""]
        lines += ["| attribute | accuracy | majority baseline | majority class | n |", "|---|---:|---:|---|---:|"]
        for name, a in report["attributes"].items():
            lines.append(
                f"| {name} | {a['accuracy']:.3f} | {a['majority_baseline']:.3f} | "
                f"{_cell(a['majority_class'])} | {a['n']} |"
            )
        lines.append("")
    samples = report.get("samples") or []
    if samples:
        lines += ["## Sample captions", "", "| audio | reference | caption |", "|---|---|---|"]
        for s in samples[:MAX_SAMPLE_ROWS]:
            lines.append(f"| {_cell(Path(s['audio']).name)} | {_cell(s['reference'])} | {_cell(s['caption'])} |")
        lines.append("")
    return "\n".join(lines)


def write_report(out_dir: str | Path, report: dict, stem: str = "eval") -> tuple[Path, Path]:
    """Write `<out_dir>/<stem>.json` and `<out_dir>/<stem>.md`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    write_text_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(md_path, markdown_report(report))
    return json_path, md_path
