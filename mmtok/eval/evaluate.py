"""`mmtok eval`: caption a manifest, score the captions, measure held-out perplexity, report.

    report = evaluate(captioner, "data/test.jsonl", shards="shards/test", attributes=DEMO_GRAMMAR)
    write_report("runs/demo/eval", report)

Every manifest item is encoded first (its first `seconds`, as `mmtok caption` does); an
unreadable item is skipped and listed under "skipped" with the reason, so one bad file does not
cost a long run. References are the item's `text`, plus its `references` list when present
(several references per clip, as in AudioCaps/Clotho test sets).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from mmtok.data.manifest import captions_of, read_manifest
from mmtok.data.stream import resolve_shards
from mmtok.eval.attributes import CaptionGrammar
from mmtok.eval.caption_metrics import caption_metrics
from mmtok.eval.perplexity import modality_perplexity


def evaluate(captioner, manifest, shards=None, run_config=None, attributes: CaptionGrammar | None = None,
             limit: int | None = None, meteor: bool = True, ppl_rows: int = 400, device: str = "cpu",
             progress: bool = True) -> dict:
    """The report dict (see `mmtok.eval.report` for how it is written).

    attributes: the caption grammar that reads attribute values out of captions (e.g.
        `mmtok.demo.attributes.DEMO_GRAMMAR`); None skips attribute accuracy.
    shards: held-out shard directory or pattern for per-modality perplexity (needs `run_config`,
        whose data pipeline, templates and sequence length are reused); None skips perplexity.
    """
    items = read_manifest(manifest)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise ValueError(f"manifest {manifest} has no items")
    # Perplexity first: it is quick, and bad --shards should fail before the long captioning part.
    perplexity = None
    if shards is not None:
        perplexity = heldout_perplexity(captioner.model, captioner.tokenizer, run_config, shards, ppl_rows, device)
    t0 = time.perf_counter()
    codes, kept, skipped = encode_items(captioner, items, manifest)
    t_encode = time.perf_counter() - t0
    captions: list[str] = []
    step = captioner.config.batch_size
    for i in tqdm(range(0, len(codes), step), desc="captioning", unit="batch", disable=not progress):
        captions += captioner.caption_codes(codes[i : i + step])
    t_caption = time.perf_counter() - t0 - t_encode
    refs = [captions_of(item["text"], item.get("references")) for item in kept]
    scores = caption_metrics(captions, refs, meteor=meteor)

    report = {
        "checkpoint": str(getattr(captioner, "source", "<in-memory model>")),
        "manifest": str(manifest),
        "n_captions": len(captions),
        "seconds_per_clip": captioner.config.seconds or round(captioner.max_seconds(), 3),
        "generation": {k: v for k, v in vars(captioner.config.generation).items() if k != "stop_ids"},
        "caption_metrics": scores.corpus,
        "timing_s": {"encode": round(t_encode, 2), "caption": round(t_caption, 2)},
    }
    if attributes is not None:
        report["attributes"] = {k: v.to_dict() for k, v in attributes.score(captions, kept).items()}
        report["attribute_fields"] = list(attributes.fields)
        if not report["attributes"]:
            print(f"mmtok eval: --attributes: no item of {manifest} has any of the fields "
                  f"{', '.join(attributes.fields)}; no attribute accuracy", file=sys.stderr)
    if perplexity is not None:
        report["perplexity"] = perplexity
    report["samples"] = [
        {"audio": item["audio"], "reference": refs[i][0], "caption": captions[i], **scores.per_caption[i]}
        for i, item in enumerate(kept)
    ]
    report["skipped"] = skipped
    return report


def encode_items(captioner, items: list[dict], manifest) -> tuple[list, list[dict], list[dict]]:
    """(codes, kept items, skipped items): every item's audio encoded; an unreadable one is
    skipped with its error (named file) instead of ending the run."""
    codes, kept, skipped = [], [], []
    for n, item in enumerate(items, 1):
        try:
            codes.append(captioner.encode(item["audio"]))
            kept.append(item)
        except (OSError, ValueError) as e:  # the message names the file
            skipped.append({"audio": item["audio"], "error": str(e)})
            print(f"mmtok eval: skipping item {n} of {manifest}: {e}", file=sys.stderr)
    if not kept:
        raise ValueError(f"no audio in {manifest} could be read (first error: {skipped[0]['error']})")
    return codes, kept, skipped


def heldout_perplexity(model, tokenizer, run_config, shards, max_rows: int, device: str = "cpu") -> dict:
    """Per-modality perplexity over the first `max_rows` packed rows of the held-out `shards`, read
    by the training data pipeline (same templates, crops and packing) in a fixed order.

    Rows go one per batch: the loader drops a last partial batch, which on a small held-out
    set would be most of it."""
    if run_config is None:
        raise ValueError("perplexity needs the run config (its data pipeline settings)")
    urls = resolve_shards(str(shards))
    missing = [u for u in urls if ":" not in u.split("/")[0] and not Path(u).is_file()]  # local paths only
    if not urls or missing:
        detail = f" ({missing[0]} does not exist)" if missing else ""
        raise FileNotFoundError(f"no shards found for {shards}{detail}")
    data = replace(run_config.data, valid_shards=str(shards), batch_size=1)
    try:
        return modality_perplexity(model, data.build(tokenizer, split="valid"), device=device, max_batches=max_rows)
    except ValueError as e:
        raise ValueError(f"held-out shards {shards}: {e}") from None


def default_out_dir(step_dir) -> Path:
    """RUN/eval/step_N for RUN/checkpoints/step_N: outside the step directory, which
    `train.keep_last_k` deletes when newer checkpoints arrive."""
    step_dir = Path(step_dir)
    if step_dir.parent.name == "checkpoints":
        return step_dir.parent.parent / "eval" / step_dir.name
    return step_dir / "eval"
