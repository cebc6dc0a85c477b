"""The checks that need a GPU, in one run that prints JSON (under 8 minutes on one GPU).

    bash benchmarks/gpu_check.sh                 # on a CUDA machine: torchrun, one process
    bash benchmarks/gpu_check.sh --dry-run       # anywhere: CPU, tiny shapes, a few steps, < 1 min
    MMTOK_GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh

Sections (the same keys in both modes; the dry run says "device": "cpu", "dry_run": true):
  attention   xformers vs SDPA outputs on the same packed batch in bf16 (max abs diff), and each
              against the fp32 math reference. The dry run has no xformers kernel: it stands in
              the xformers mask materialised (BlockDiagonalCausalMask.materialize) on CPU.
  fsdp_train  bf16 FSDP2 steps of the 125m preset (dry run: the tiny shape) on synthetic packed
              rows of learnable documents (arithmetic sequences): the loss falls, no NaN;
              tokens/s, MFU against the GPU's bf16 dense peak (mmtok.training.metrics.PEAK_FLOPS)
  hf_llama    the same step for transformers' LlamaForCausalLM (attn_implementation="sdpa") of
              identical shape and weights on the same data, also under FSDP2 bf16: tokens/s, ratio
  compile     the mmtok step eager vs train.compile (blocks compiled, as the trainer does):
              tokens/s, time of the first compiled steps, graphs compiled
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F


def synthetic_batches(n: int, rows: int, seq_len: int, vocab: int, seed: int = 0):
    """n PackedBatches of packed documents of 40..seq_len/2 tokens; each document counts by a
    random stride from a random start (mod vocab), so the next token is learnable in context."""
    from mmtok.data.batch import PackedBatch
    from mmtok.tokenizer.layout import IGNORE_INDEX

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.zeros(rows, seq_len + 1, dtype=torch.long)
        doc_ids = torch.full((rows, seq_len + 1), -1, dtype=torch.int32)
        positions = torch.zeros(rows, seq_len + 1, dtype=torch.long)
        for r in range(rows):
            at, doc = 0, 0
            while at < seq_len + 1:
                n_tok = min(int(torch.randint(40, max(41, seq_len // 2), (), generator=g)), seq_len + 1 - at)
                start, stride = (int(x) for x in torch.randint(1, vocab, (2,), generator=g))
                tokens[r, at:at + n_tok] = (start + stride * torch.arange(n_tok)) % vocab
                doc_ids[r, at:at + n_tok] = doc
                positions[r, at:at + n_tok] = torch.arange(n_tok)
                at, doc = at + n_tok, doc + 1
        targets = tokens[:, 1:].clone()
        targets[doc_ids[:, 1:] != doc_ids[:, :-1]] = IGNORE_INDEX  # no loss across a document boundary
        out.append(PackedBatch(tokens[:, :-1], targets, positions[:, :-1], doc_ids[:, :-1],
                               torch.ones(rows, seq_len, dtype=torch.int8)))
    return out


def check_attention(device, dry: bool) -> dict:
    from mmtok.model.attention import AttentionMask, attend, xformers_bias

    g = torch.Generator().manual_seed(0)
    b, hq, hkv, t, d = (2, 4, 2, 128, 32) if dry else (4, 16, 4, 2048, 128)
    doc_ids = synthetic_batches(1, b, t, 1000)[0].doc_ids
    q, k, v = (torch.randn(b, h, t, d, generator=g) for h in (hq, hkv, hkv))
    ref = attend(q, k, v, AttentionMask.from_doc_ids(doc_ids, "math"), "math").float()  # fp32, CPU
    q16, k16, v16 = (x.to(device, torch.bfloat16) for x in (q, k, v))
    ids = doc_ids.to(device)
    sdpa = attend(q16, k16, v16, AttentionMask.from_doc_ids(ids, "sdpa"), "sdpa").float().cpu()
    if dry:  # no kernel on CPU: the same attn_bias, materialised, with a softmax
        mask = AttentionMask.from_doc_ids(doc_ids, "xformers")
        bias = xformers_bias(mask, b, t).materialize((b * t, b * t)).view(b, t, b, t)
        bias = torch.stack([bias[i, :, i] for i in range(b)])[:, None]  # (B, 1, T, T) row blocks
        k_r, v_r = (x.repeat_interleave(hq // hkv, 1) for x in (k16, v16))
        scores = (q16.float() @ k_r.float().transpose(-2, -1)) / d**0.5 + bias
        xf = (scores.softmax(-1) @ v_r.float()).to(torch.bfloat16).transpose(1, 2).float()
        impl = "attn_bias materialised on CPU (dry run; the kernel needs CUDA)"
    else:
        xf = attend(q16, k16, v16, AttentionMask.from_doc_ids(ids, "xformers"), "xformers").float().cpu()
        impl = "xformers.ops.memory_efficient_attention"
    return {
        "shape_bhtd": [b, hq, t, d], "kv_heads": hkv, "documents": int((doc_ids[:, 1:] != doc_ids[:, :-1]).sum()) + b,
        "xformers_impl": impl,
        "max_abs_diff_xformers_vs_sdpa_bf16": (xf - sdpa).abs().max().item(),
        "max_abs_diff_xformers_vs_fp32": (xf - ref).abs().max().item(),
        "max_abs_diff_sdpa_vs_fp32": (sdpa - ref).abs().max().item(),
        "ok": (xf - sdpa).abs().max().item() < 3e-2,
    }


def shard(model, blocks, dtype):
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(forward, params, batches, steps: int, device, warmup: int) -> dict:
    """AdamW steps of forward(batch) -> logits on batches (cycled); losses and timing after warmup."""
    from mmtok.tokenizer.layout import IGNORE_INDEX

    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
    losses, t0, first_s = [], None, None
    start = time.perf_counter()
    for i in range(steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
            first_s = t0 - start
        b = batches[i % len(batches)]
        logits = forward(b)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), b.targets.flatten(), ignore_index=IGNORE_INDEX)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    sync(device)
    timed = steps - warmup
    dt = time.perf_counter() - t0
    tokens = sum(batches[i % len(batches)].tokens.numel() for i in range(warmup, steps))
    return {"losses": losses, "seconds": dt, "tokens": tokens, "timed_steps": timed, "first_steps_s": first_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", default=os.environ.get("MMTOK_GPU_CHECK_DRY") == "1",
                    help="CPU, tiny shapes, few steps (also MMTOK_GPU_CHECK_DRY=1)")
    ap.add_argument("--config", default="125m", help="preset whose model shape is trained (not in --dry-run)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--micro-batch", type=int, default=8, help="rows per step")
    ap.add_argument("--vocab", type=int, default=12160)
    args = ap.parse_args()
    t_start = time.perf_counter()
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; run with --dry-run (or MMTOK_GPU_CHECK_DRY=1) to test it on CPU")

    from mmtok.config import load_config
    from mmtok.model.attention import seqlens_of
    from mmtok.model.config import ModelConfig
    from mmtok.training.metrics import peak_flops
    from mmtok.training.parallelize import DistInfo, parallelize, resolve_device

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu") if dry else resolve_device("auto", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # FSDP2 needs a process group, even of one (torchrun sets the env)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), device)
    dtype = torch.bfloat16
    if dry:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        model_cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128, attention="sdpa")
        steps, rows, vocab, warmup = 16, 2, 512, 3
    else:
        model_cfg = load_config(args.config).model
        steps, rows, vocab, warmup = args.steps, args.micro_batch, args.vocab, 5
    model_cfg = model_cfg.for_vocab(vocab)
    seq_len = model_cfg.max_seq_len
    batches = [b.to(device) for b in synthetic_batches(4, rows, seq_len, vocab, seed=1)]
    step_flops = sum(model_cfg.flops(seqlens_of(b.doc_ids.cpu())) for b in batches) / len(batches)
    peak = peak_flops(device, dtype)

    result = {
        "device": "cpu" if dry else torch.cuda.get_device_name(device),
        "dry_run": dry,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": {"preset": "tiny shape (dry run)" if dry else args.config, "params_M": round(model_cfg.num_params() / 1e6, 2),
                  "rows": rows, "seq_len": seq_len, "vocab_size": vocab},
        "attention": check_attention(device, dry),
    }

    def perf(r: dict) -> dict:
        tps = r["tokens"] / r["seconds"]
        flops = step_flops * r["timed_steps"] / r["seconds"]
        return {"tokens_per_s": round(tps, 1), "mfu": round(flops / peak, 4) if peak else None}

    # ---- mmtok under FSDP2, bf16 ------------------------------------------------------------
    torch.manual_seed(0)
    ours = model_cfg.build().to(device)
    from mmtok.export.hf import hf_state_dict, llama_config

    weights = hf_state_dict(ours)
    ours = parallelize(ours, info, "fsdp", dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    r = run_steps(lambda b: ours(b.tokens, b.positions, b.doc_ids), list(ours.parameters()), batches, steps, device, warmup)
    losses = r["losses"]
    result["fsdp_train"] = {
        "steps": steps, "loss_first": losses[0], "loss_last": losses[-1],
        "loss_fell": losses[-1] < losses[0] - (0.05 if dry else 0.5), "any_nan": any(x != x for x in losses),
        **perf(r), "peak_flops_per_device": peak,
        "max_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    ours = None  # free its memory before the next model

    # ---- Hugging Face Llama of the same shape and weights, same data, same FSDP2 policy -------------
    from transformers import LlamaForCausalLM

    theirs = LlamaForCausalLM._from_config(llama_config(model_cfg), attn_implementation="sdpa").to(device)
    theirs.load_state_dict(weights, strict=False)
    theirs = shard(theirs, theirs.model.layers, dtype)
    hf_steps = max(warmup + 2, steps // 2)
    r_hf = run_steps(lambda b: theirs(input_ids=b.tokens, position_ids=b.positions, use_cache=False).logits,
                     list(theirs.parameters()), batches, hf_steps, device, warmup)
    hf = perf(r_hf)
    result["hf_llama"] = {
        "steps": hf_steps, "loss_first": r_hf["losses"][0], "loss_last": r_hf["losses"][-1], **hf,
        "ratio_mmtok_over_hf_tokens_per_s": round(result["fsdp_train"]["tokens_per_s"] / hf["tokens_per_s"], 3),
    }
    theirs = None

    # ---- compiled vs eager (mmtok, FSDP2, bf16) ------------------------------------------------------
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    twin = parallelize(model_cfg.build().to(device), info, "fsdp", dtype, compile=True)
    c_steps = max(warmup + 2, steps // 2)
    r_c = run_steps(lambda b: twin(b.tokens, b.positions, b.doc_ids), list(twin.parameters()), batches, c_steps,
                    device, warmup)
    compiled = perf(r_c)
    result["compile"] = {
        "steps": c_steps, "eager_tokens_per_s": result["fsdp_train"]["tokens_per_s"], **{f"compiled_{k}": v for k, v in compiled.items()},
        "ratio_compiled_over_eager": round(compiled["tokens_per_s"] / result["fsdp_train"]["tokens_per_s"], 3),
        "first_steps_with_compilation_s": round(r_c["first_steps_s"], 1),
        "graphs_compiled": int(counters["stats"]["unique_graphs"]),
        "recompile_limit_hit": bool(counters["unimplemented"]),
        "loss_last": r_c["losses"][-1],
    }
    result["ok"] = bool(result["attention"]["ok"] and result["fsdp_train"]["loss_fell"]
                        and not result["fsdp_train"]["any_nan"] and not result["compile"]["recompile_limit_hit"])
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    if info.is_main:
        print(json.dumps(result, indent=2))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
