"""Does generated music follow its caption? Text -> music adherence, read by linear probes. Prints JSON.

    .venv/bin/python benchmarks/music_adherence.py runs/demo                       # cfg_coef 1 and 3
    .venv/bin/python benchmarks/music_adherence.py runs/demo --cfg-coef 1 2 3 --limit 100

For each caption of the unseen test clips (its `text`), the demo run's final checkpoint generates
`--seconds` of audio codes the way `mmtok generate` does (sampled, top_k=250, seeded), once per
`--cfg-coef`. A linear probe trained on the real train clips' codes (attribute_probe.py's
bag-of-codes features, weight decay picked on the valid clips) names the attribute of each
generated clip; the score is the share that agrees with the caption it was generated from.
Beside it: the same probe on the real test clips (how well it reads real audio: the most a
generated clip can score) and the majority baseline. An attribute the probe cannot read from
real codes (tempo, mode: about their baselines on a fitted codec) says nothing either way.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from attribute_probe import code_features, fit_probe, shard_codes

ATTRIBUTES = ("family", "tempo_class", "mode", "meter")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a demo output directory (corpus/, shards/ and train/ inside)")
    ap.add_argument("--cfg-coef", type=float, nargs="+", default=[1.0, 3.0], help="guidance scales to compare")
    ap.add_argument("--seconds", type=float, default=5.0, help="audio generated per caption")
    ap.add_argument("--limit", type=int, default=None, help="first N test clips only")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mmtok.checkpoint import load_for_inference
    from mmtok.generate.music import generate_codes_batch
    from mmtok.generate.sampling import GenerationConfig

    model, _, tok = load_for_inference(args.demo / "train")
    splits = ("train", "valid", "test")
    codes = {s: shard_codes(args.demo, s) for s in splits}
    rows = {s: [r for r in map(json.loads, (args.demo / "corpus" / f"{s}.jsonl").read_text().splitlines())
                if r["id"] in codes[s]] for s in splits}  # clips that made it into shards
    rows["test"] = rows["test"][: args.limit]
    size = tok.layout.codebook_size
    x = {s: np.stack([code_features(codes[s][r["id"]].codes, size) for r in rows[s]]) for s in splits}

    generated, timing = {}, {}
    captions = [r["text"] for r in rows["test"]]
    for coef in args.cfg_coef:
        gen = GenerationConfig(top_k=250, temperature=1.0, seed=args.seed, cfg_coef=coef)
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(captions), args.batch_size):
            out += generate_codes_batch(model, tok, captions[i : i + args.batch_size], args.seconds, gen)
        timing[coef] = round(time.perf_counter() - t0, 1)
        generated[coef] = np.stack([code_features(c.codes, size) for c in out])

    result = {"demo": str(args.demo), "test_captions": len(captions), "seconds_per_clip": args.seconds,
              "generation_seconds": {f"cfg_{c:g}": t for c, t in timing.items()}, "attributes": {}}
    for attr in ATTRIBUTES:
        classes = sorted({r[attr] for s in splits for r in rows[s]})
        y = {s: np.array([classes.index(r[attr]) for r in rows[s]]) for s in splits}
        predict, real = fit_probe(x, y)
        majority = float(np.mean(y["test"] == np.bincount(y["train"]).argmax()))
        scores = {"majority_baseline": round(majority, 3), "real_test_clips": round(real, 3)}
        for coef, feats in generated.items():
            scores[f"generated_cfg_{coef:g}"] = round(float(np.mean(predict(feats) == y["test"])), 3)
        result["attributes"][attr] = scores
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
