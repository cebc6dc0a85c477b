"""`mmtok train --plan`: the memory arithmetic of mmtok/training/plan.py against what torch holds.

Parameter, gradient and AdamW bytes are checked exactly after one optimizer step. Activations are
checked against the peak that torch's MemTracker measures on CPU (it follows every tensor's
storage through a dispatch mode, so it sees the real allocations, unlike process RSS, which the
allocator's caching blurs). Tolerances: without activation checkpointing the estimate sits 5% below
to 20% above the measured peak; with it, 15% below to 60% above (the estimate assumes the loss
head's peak and one recomputed block coincide; measured ratios are in docs/training.md).
"""

import json

import pytest
import torch
import torch.nn.functional as F

from mmtok.model.config import ModelConfig
from mmtok.optim.optimizer import OptimConfig
from mmtok.training.parallelize import DistInfo, parallelize
from mmtok.training.plan import activation_bytes, state_bytes

SHAPES = {  # configs/tiny.yaml and configs/demo.yaml
    "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=256),
    "demo": dict(dim=384, n_layers=8, n_heads=6, n_kv_heads=2, max_seq_len=1024),
}
ROWS = {"tiny": (4, 256), "demo": (1, 512)}


def _config(name, tiny_layout, **kw) -> ModelConfig:
    return ModelConfig(**SHAPES[name], attention="sdpa", **kw).for_vocab(len(tiny_layout))


@pytest.mark.parametrize("name", ["tiny", "demo"])
@pytest.mark.parametrize("tied", [False, True])
def test_parameter_gradient_and_optimizer_bytes_are_exact(name, tied, tiny_layout):
    cfg = _config(name, tiny_layout, tie_embeddings=tied)
    model = cfg.build()
    opt = OptimConfig().build(model)
    tokens = torch.randint(0, cfg.vocab_size, (1, 16))
    F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    opt.step()
    held = {
        "parameters": sum(p.nbytes for p in model.parameters()),
        "gradients": sum(p.grad.nbytes for p in model.parameters()),
        "optimizer": sum(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
    }
    assert state_bytes(cfg, 1, 4) == held


def _measured_activation_peak(cfg: ModelConfig, e: int, checkpointing: bool, b: int, t: int) -> int:
    """MemTracker's peak over forward, loss and backward, less parameters, buffers and gradients."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    model = cfg.build().train()
    if e == 2:  # what FSDP2's bf16 MixedPrecisionPolicy computes with: bf16 parameters, fp32 buffers
        for p in model.parameters():
            p.data = p.data.bfloat16()
    wrapped = parallelize(model, DistInfo(0, 0, 1, torch.device("cpu")), "ddp", None,
                          activation_checkpointing=checkpointing)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
    doc_ids = torch.zeros(b, t, dtype=torch.int32)
    doc_ids[:, t // 3:] += 1
    doc_ids[:, 2 * t // 3:] += 1
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        logits = wrapped(tokens, doc_ids=doc_ids)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").sum().backward()
        del logits
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    held = sum(v for k, v in peak.items() if k != "Total" and k.value in ("Parameter", "Buffer", "Gradient"))
    return peak["Total"] - held


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no_ac", "ac"])
@pytest.mark.parametrize("e", [4, 2], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_activation_estimate_tracks_the_measured_peak(name, e, checkpointing, tiny_layout):
    cfg = _config(name, tiny_layout)
    b, t = ROWS[name]
    measured = _measured_activation_peak(cfg, e, checkpointing, b, t)
    estimate = activation_bytes(cfg, b * t, e, checkpointing, "sdpa", b, t) - b * t * t  # no dense mask on CPU
    low, high = (0.85, 1.6) if checkpointing else (0.95, 1.2)
    assert low <= estimate / measured <= high, (estimate / 2**20, measured / 2**20)


def test_plan_cli_prints_json_and_a_table_and_7b_fits_on_8_gpus(capsys):
    from mmtok.cli import main

    assert main(["train", "7b", "--plan", "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    text, table = out.split("\n\n", 1)
    plan = json.loads(text)
    mem = plan["memory_per_gpu"]
    assert mem["fits"] and mem["gpus"] == 8 and mem["dtype"] == "bf16" and mem["activation_checkpointing"]
    assert plan["min_gpus_that_fit"] <= 8
    assert plan["tokens_per_step"] == 4194304 and plan["grad_accum"] == 64
    assert mem["activations_checkpointing_gib"] < mem["activations_no_checkpointing_gib"]
    assert "smallest GPU count that fits" in table and "fits" in table
    assert main(["train", "7b", "--plan", "--gpus", "1"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n\n", 1)[0])["memory_per_gpu"]["fits"] is False
