"""Loader throughput and memory. Prints JSON.

    .venv/bin/python benchmarks/dataloader.py [--workers 2] [--batches 60] [--tokenizer DIR]

1. packed positions delivered per second by `DataConfig.build` (2 DataLoader workers, tiny
   config shapes: seq_len 256, batch 4), against what one training step of the tiny model
   (configs/tiny.yaml: dim 64, 2 layers) consumes per second on this CPU (fwd + bwd + AdamW);
2. packing efficiency: share of positions that are real tokens (not padding);
3. peak memory of the loader (main process, and the largest worker) reading the same 200 samples
   as 10 shards and as 100 shards, each in a fresh process: it must not grow with the shard count.

Data: the demo corpus (built in --workdir if missing; `benchmarks/shard.py` prepares it), its
train manifest repeated to 200 items, sharded once into 100 shards; the 10-shard set is those
shards' members regrouped (no second encode).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path


def regroup(src: list[str], out: Path, n: int) -> None:
    """Copy the members of `src` shards, in order, into `n` shards (same samples, fewer files)."""
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(src) // n)
    for i in range(n):
        with tarfile.open(out / f"train-{i:06d}.tar", "w") as dst:
            for path in src[i * per : (i + 1) * per]:
                with tarfile.open(path) as s:
                    for m in s.getmembers():
                        dst.addfile(m, s.extractfile(m))


def child(args) -> None:
    """One measurement in a fresh process: iterate the loader, report speed and peak memory."""
    import torch

    from mmtok.data.loader import DataConfig
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    torch.set_num_threads(1)
    tok = MultimodalTokenizer.from_pretrained(args.tokenizer)
    cfg = DataConfig(train_shards=args.child, seq_len=args.seq_len, batch_size=args.batch_size,
                     workers=args.workers, shuffle_buffer=64, seed=0)  # fmt: skip
    it = iter(cfg.build(tok))
    next(it)  # warm-up: worker start, shuffle buffer fill
    t0, real, total = time.perf_counter(), 0, 0
    for _ in range(args.batches):
        b = next(it)
        real += int((b.doc_ids >= 0).sum())
        total += b.doc_ids.numel()
    wall = time.perf_counter() - t0
    del it  # shuts the workers down, so their peak RSS is in RUSAGE_CHILDREN
    import gc

    gc.collect()
    time.sleep(0.5)
    print(json.dumps({
        "positions_per_s": round(total / wall), "packing_efficiency": round(real / total, 4),
        "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }))  # fmt: skip


def train_step_tokens_per_s(vocab: int, seq_len: int, batch: int, steps: int = 10) -> float:
    """fwd + bwd + AdamW of the tiny model on (batch, seq_len) packed rows, tokens per second."""
    import torch
    import torch.nn.functional as F

    from mmtok.model.config import ModelConfig

    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=seq_len).for_vocab(vocab)
    model = cfg.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, vocab, (batch, seq_len))
    doc_ids = (torch.arange(seq_len) // 64).expand(batch, -1).to(torch.int32)  # 4 documents a row

    def step():
        logits = model(tokens, doc_ids=doc_ids)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * seq_len * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/mmtok-bench-data")
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import torch

    from mmtok.data.manifest import read_manifest, write_jsonl
    from mmtok.data.shard import ShardConfig, shard_manifest
    from mmtok.data.stream import resolve_shards
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from shard import prepare

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    corpus, tok_dir = prepare(workdir, "smoke", args.tokenizer)
    tok = MultimodalTokenizer.from_pretrained(tok_dir)
    shards100 = workdir / "loader-shards-100"
    if not (shards100 / "shards.jsonl").exists():
        items = read_manifest(corpus / "train.jsonl")
        many = [{**items[i % len(items)], "id": f"{items[i % len(items)]['id']}_r{i}"} for i in range(200)]
        write_jsonl(workdir / "train200.jsonl", many)
        shard_manifest(workdir / "train200.jsonl", tok_dir, shards100, split="train",
                       cfg=ShardConfig(max_samples=2, workers=2), progress=False)  # fmt: skip
    urls = resolve_shards(shards100 / "shards.jsonl#train")
    shards10 = workdir / "loader-shards-10"
    if not shards10.exists():
        regroup(urls, shards10, 10)

    results = {}
    for name, spec in (("10_shards", str(shards10)), ("100_shards", str(shards100 / "shards.jsonl#train"))):
        cmd = [sys.executable, __file__, "--child", spec, "--tokenizer", str(tok_dir), "--workers", str(args.workers),
               "--batches", str(args.batches), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    step = train_step_tokens_per_s(len(tok), args.seq_len, args.batch_size)
    loader = results["100_shards"]["positions_per_s"]
    print(json.dumps({
        "benchmark": "dataloader", "workers": args.workers, "seq_len": args.seq_len, "batch_size": args.batch_size,
        "codec": tok.config.codec, "loader_positions_per_s": loader,
        "tiny_train_step_tokens_per_s": round(step), "loader_over_step": round(loader / step, 2),
        "packing_efficiency": results["100_shards"]["packing_efficiency"], "by_shard_count": results,
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
