"""Generation throughput: KV cache vs recomputation, and mmtok vs transformers. Prints JSON.

    .venv/bin/python benchmarks/generate.py [--threads 1] [--new-tokens 256] [--dim 384 ...]

One process, same machine, same prompts (left-padded batch of different lengths), greedy:
  1. mmtok `generate` with the KV cache vs `use_cache=False` (full recomputation each step);
  2. the same model exported with `mmtok.export.hf.export_hf`, loaded by
     `LlamaForCausalLM.from_pretrained` and run with `model.generate` (its own KV cache, same
     left padding via attention_mask); the ids are compared too.
New tokens/s counts generated tokens of all rows (batch * new tokens) over wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from common import add_model_args, model_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=64, help="longest prompt; others are shorter")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each (best is reported)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import LlamaForCausalLM

    from mmtok.export.hf import export_hf
    from mmtok.generate.engine import GenerationConfig, generate, left_pad
    from mmtok.tokenizer.layout import VocabLayout

    # The demo's vocabulary: 600 SentencePiece pieces, 2 codebooks of 1024 codes (configs/demo.yaml dims).
    layout = VocabLayout(text_size=600, n_codebooks=2, codebook_size=1024)
    cfg = model_config(args, args.prompt_len + args.new_tokens, init_std=0.1).for_vocab(len(layout))
    torch.manual_seed(0)
    model = cfg.build().eval()
    g = torch.Generator().manual_seed(0)
    lengths = [args.prompt_len - i * args.prompt_len // (2 * args.batch) for i in range(args.batch)]
    prompts = [torch.randint(0, layout.text_size, (n,), generator=g).tolist() for n in lengths]
    n_new = args.batch * args.new_tokens

    def best_time(fn):
        """Best wall time of fn(new_tokens) over --repeats runs, after a short warm-up run."""
        fn(8)
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn(args.new_tokens)
            best = min(best, time.perf_counter() - t)
        return best, out

    t_cache, ids_cache = best_time(
        lambda n: generate(model, prompts, GenerationConfig(max_new_tokens=n, greedy=True)))
    t_full, ids_full = best_time(
        lambda n: generate(model, prompts, GenerationConfig(max_new_tokens=n, greedy=True, use_cache=False)))

    with tempfile.TemporaryDirectory() as d:
        hf = LlamaForCausalLM.from_pretrained(export_hf(model, cfg, f"{d}/hf")).eval()
    tokens, doc_ids, _ = left_pad(prompts, pad_id=layout.pad_id)
    mask = (doc_ids >= 0).long()

    def hf_generate(n):
        with torch.inference_mode():
            out = hf.generate(tokens, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, eos_token_id=None, pad_token_id=layout.pad_id)
        return out[:, tokens.shape[1]:].tolist()

    t_hf, ids_hf = best_time(hf_generate)
    same = sum(a == b for a, b in zip(ids_cache, ids_hf))

    print(json.dumps({
        "machine": f"CPU, {args.threads} torch threads, {os.cpu_count()} cores shared, "
                   f"1-min load average {os.getloadavg()[0]:.1f} at the end",
        "model": {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": cfg.kv_heads,
                  "vocab_size": cfg.vocab_size, "params_M": round(cfg.num_params() / 1e6, 2)},
        "batch": args.batch, "prompt_lengths": lengths, "new_tokens": args.new_tokens,
        "kv_cache": {
            "cached_new_tokens_per_s": round(n_new / t_cache, 1),
            "recompute_new_tokens_per_s": round(n_new / t_full, 1),
            "speedup": round(t_full / t_cache, 2),
            "same_ids": ids_cache == ids_full,
            "goal": ">= 5",
        },
        "vs_transformers": {
            "mmtok_new_tokens_per_s": round(n_new / t_cache, 1),
            "hf_new_tokens_per_s": round(n_new / t_hf, 1),
            "ratio_mmtok_over_hf": round(t_hf / t_cache, 2),
            "rows_with_identical_ids": f"{same}/{args.batch}",
            "goal": ">= 1",
        },
    }, indent=2))


if __name__ == "__main__":
    main()
