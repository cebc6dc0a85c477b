"""train.compile on packed rows: one graph whatever the number of documents in a row.

The segment lengths are a Python list whose length changes from batch to batch; a graph that read
it would be compiled again for every document count until dynamo's recompile limit (8), then run
eager. The compiled path builds its mask from a fixed-shape tensor instead (mmtok/model/attention.py).
"""

import copy

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

from mmtok.model.attention import AttentionMask, attend
from mmtok.training.parallelize import DistInfo, parallelize

T = 64


def packed_doc_ids(n_docs: int, g: torch.Generator, batch: int = 2, t: int = T) -> torch.Tensor:
    """(batch, t) doc ids: n_docs documents at random cuts, then (half the time) padding."""
    rows = []
    for _ in range(batch):
        cuts = sorted((torch.randperm(t - 1, generator=g)[: n_docs - 1] + 1).tolist())
        row = torch.zeros(t, dtype=torch.int32)
        for c in cuts:
            row[c:] += 1
        if n_docs > 1 and torch.rand((), generator=g) < 0.5:
            row[-3:] = -1
        rows.append(row)
    return torch.stack(rows)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.slow  # ~45 s with a cold inductor cache on 2 cores (~12 s warm)
def test_compiled_tiny_model_does_not_recompile_per_document_count(make_tiny_model, fresh_dynamo):
    """20 packed batches with 1..9 documents per row: at most 2 graphs (rows of one document take
    the is_causal form), no recompile-limit fallback to eager, no graph break, and the compiled
    logits and gradients equal eager's."""
    eager = make_tiny_model(max_seq_len=T, init_std=0.02).train()
    model = copy.deepcopy(eager)
    compiled = parallelize(model, DistInfo(0, 0, 1, torch.device("cpu")), "ddp", None, compile=True)
    g = torch.Generator().manual_seed(0)
    counts = [1 + i % 9 for i in range(20)]
    for n_docs in counts:
        doc_ids = packed_doc_ids(n_docs, g)
        tokens = torch.randint(0, 200, doc_ids.shape, generator=g)
        ours, ref = compiled(tokens, doc_ids=doc_ids), eager(tokens, doc_ids=doc_ids)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
        ours.square().mean().backward()
        ref.square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-6, msg=name)
    assert len(set(counts)) == 9
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])
    assert not counters["unimplemented"], dict(counters["unimplemented"])  # e.g. 'recompile_limit reached'
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["frames"]["total"] == counters["frames"]["ok"] <= 2, dict(counters["frames"])


def test_xformers_kernel_call_stays_out_of_the_graph(monkeypatch, fresh_dynamo):
    """The xformers kernel needs CUDA; here a CPU stand-in computes with the same attn_bias
    (materialised). The code around the call compiles once for every document count: the lengths
    list only reaches the kernel call, which torch.compile leaves out of the graph."""
    import xformers.ops
    from xformers.ops import fmha

    def cpu_kernel(q, k, v, attn_bias):  # (1, B*T, H, D) each
        assert isinstance(attn_bias, fmha.attn_bias.BlockDiagonalCausalMask)
        n = q.shape[1]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
        scores = scores + attn_bias.materialize((n, n)).to(q.dtype)
        return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)

    monkeypatch.setattr(xformers.ops, "memory_efficient_attention", cpu_kernel)
    proj = torch.nn.Linear(16, 16)

    def layer(x, mask):  # (B, H, T, D) -> projections, attention, projection
        return proj(attend(proj(x), proj(x)[:, :2], proj(x)[:, :2], mask, "xformers"))

    cnt = CompileCounter()
    compiled = torch.compile(layer, backend=cnt)
    g = torch.Generator().manual_seed(1)
    for n_docs in range(2, 12):
        doc_ids = packed_doc_ids(n_docs, g, t=32)
        x = torch.randn(2, 4, 32, 16, generator=g)
        mask = AttentionMask.from_doc_ids(doc_ids, "xformers")
        ref = proj(attend(proj(x), proj(x)[:, :2], proj(x)[:, :2],
                          AttentionMask.from_doc_ids(doc_ids, "math"), "math"))
        torch.testing.assert_close(compiled(x, mask), ref, rtol=1e-4, atol=1e-5)
    assert cnt.frame_count <= 2, cnt.frame_count  # before and after the kernel call, compiled once
    assert not counters["unimplemented"], dict(counters["unimplemented"])
