"""Sharding throughput: audio seconds encoded into WebDataset shards per wall second. Prints JSON.

    .venv/bin/python benchmarks/shard.py [--workers 1 2] [--tokenizer DIR] [--size smoke]

Without --tokenizer it builds the demo corpus (`--size`, resumable, in --workdir) and a tokenizer
with a tiny codec fitted on that corpus (the pretrained EnCodec weights cannot be downloaded
here); pass a tokenizer directory to measure another codec. Each run shards train.jsonl into a
fresh directory, so nothing is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def prepare(workdir: Path, size: str = "smoke", tokenizer: str | None = None) -> tuple[Path, Path]:
    """(corpus dir, tokenizer dir): the demo corpus, and a tokenizer fitted on it unless given."""
    from mmtok.demo.corpus import build_demo_corpus

    corpus = workdir / f"corpus-{size}"
    build_demo_corpus(corpus, size=size, seed=0, progress=False)
    if tokenizer:
        return corpus, Path(tokenizer)
    tok_dir = workdir / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        from mmtok.codec.fit import fit_codec
        from mmtok.tokenizer.multimodal import MultimodalTokenizer

        codec = fit_codec(corpus / "audio", workdir / "codec", minutes=0.2, preset="tiny", progress=False)
        MultimodalTokenizer.build([corpus / "captions.txt"], codec=str(codec), out=tok_dir, vocab_size=1000,
                                  overwrite=True)  # fmt: skip
    return corpus, tok_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/mmtok-bench-data")
    ap.add_argument("--size", default="smoke", choices=("smoke", "default", "large"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: fit a tiny codec)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-samples", type=int, default=16)
    args = ap.parse_args()

    import torch

    from mmtok.data.manifest import read_manifest
    from mmtok.data.shard import ShardConfig, shard_manifest
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    corpus, tok_dir = prepare(workdir, args.size, args.tokenizer)
    tok = MultimodalTokenizer.from_pretrained(tok_dir)
    audio_seconds = sum(float(i["duration"]) for i in read_manifest(corpus / "train.jsonl"))
    runs = []
    for workers in args.workers:
        out = workdir / f"shards-bench-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        summary = shard_manifest(corpus / "train.jsonl", tok_dir, out,
                                 cfg=ShardConfig(max_samples=args.max_samples, workers=workers), progress=False)  # fmt: skip
        wall = time.perf_counter() - t0
        runs.append({"workers": workers, "samples": summary["samples"], "shards": summary["shards"],
                     "wall_s": round(wall, 2), "audio_s_per_wall_s": round(audio_seconds / wall, 1)})  # fmt: skip
    print(json.dumps({
        "benchmark": "shard", "codec": tok.config.codec, "codebooks": tok.config.n_codebooks,
        "frame_rate": tok.config.frame_rate, "audio_seconds": round(audio_seconds, 1),
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "runs": runs,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
