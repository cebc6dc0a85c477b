"""Attention backends: agreement, document boundaries, and xformers' mask against ours."""

import pytest
import torch

from mmtok.model.attention import (
    AttentionMask,
    attend,
    block_causal_mask,
    resolve_backend,
    segment_starts,
    seqlens_of,
    xformers_bias,
)

# Two packed rows: three documents then padding; one document filling the row.
DOC_IDS = torch.tensor([[0] * 5 + [1] * 7 + [2] * 3 + [-1] * 3, [0] * 18], dtype=torch.int32)


def _qkv(b=2, hq=4, hkv=2, t=18, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, hq, t, d, generator=g), torch.randn(b, hkv, t, d, generator=g),
            torch.randn(b, hkv, t, d, generator=g))


def test_sdpa_and_math_agree_on_packed_rows_with_gqa():
    """sdpa on CPU goes segment by segment; on GPU it takes the dense block mask: both, and the
    math reference, give the same output."""
    q, k, v = _qkv()
    out = {b: attend(q, k, v, AttentionMask.from_doc_ids(DOC_IDS, b), b) for b in ("sdpa", "math")}
    assert AttentionMask.from_doc_ids(DOC_IDS, "sdpa").seqlens == [5, 7, 3, 3, 18]
    torch.testing.assert_close(out["sdpa"], out["math"])
    dense = AttentionMask(dense=block_causal_mask(segment_starts(DOC_IDS)))
    torch.testing.assert_close(attend(q, k, v, dense, "sdpa"), out["math"])
    causal = {b: attend(q, k, v, AttentionMask.from_doc_ids(None, b), b) for b in ("sdpa", "math")}
    torch.testing.assert_close(causal["sdpa"], causal["math"])


def test_dense_mask_is_causal_inside_each_segment_only():
    mask = block_causal_mask(segment_starts(DOC_IDS))[:, 0]  # (B, T, T)
    for row, docs in zip(mask, DOC_IDS.tolist()):
        for i in range(len(docs)):
            for j in range(len(docs)):
                same_run = docs[i] == docs[j] and all(d == docs[i] for d in docs[min(i, j): max(i, j) + 1])
                assert bool(row[i, j]) == (j <= i and same_run), (i, j)


def test_one_document_per_row_uses_the_causal_kernel_path():
    assert AttentionMask.from_doc_ids(torch.zeros(3, 9, dtype=torch.int32), "sdpa").causal
    assert AttentionMask.from_doc_ids(None, "sdpa").causal
    assert not AttentionMask.from_doc_ids(DOC_IDS, "sdpa").causal


def test_xformers_bias_materializes_to_our_block_mask():
    """xformers' kernels need CUDA, but its BlockDiagonalCausalMask materializes on CPU: built from
    PackedBatch.seqlens over the flattened (B*T) batch it must equal our dense mask, row blocks
    on the diagonal and nothing across rows."""
    from xformers.ops import fmha

    b, t = DOC_IDS.shape
    mask = AttentionMask.from_doc_ids(DOC_IDS, "xformers")
    assert mask.seqlens == seqlens_of(DOC_IDS) == [5, 7, 3, 3, 18]
    bias = xformers_bias(mask, b, t)  # what the xformers backend passes to its kernel
    assert isinstance(bias, fmha.attn_bias.BlockDiagonalCausalMask)
    theirs = bias.materialize((b * t, b * t)) == 0  # 0 where visible, -inf elsewhere

    ours = torch.zeros(b * t, b * t, dtype=torch.bool)
    dense = block_causal_mask(segment_starts(DOC_IDS))[:, 0]  # (B, T, T)
    for i in range(b):
        ours[i * t:(i + 1) * t, i * t:(i + 1) * t] = dense[i]
    assert torch.equal(theirs, ours)
    # One document per row: the causal form becomes one block per row.
    causal = xformers_bias(AttentionMask.from_doc_ids(None, "xformers"), b, t).materialize((b * t, b * t)) == 0
    assert torch.equal(causal, torch.block_diag(*[torch.ones(t, t).tril()] * b).bool())


def test_xformers_backend_refuses_cpu_tensors_with_a_clear_error():
    with pytest.raises(ValueError, match="xformers' needs CUDA"):
        resolve_backend("xformers", torch.device("cpu"))
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_documents_do_not_leak_into_each_other(make_tiny_model, backend):
    """Changing document 1 of a packed row leaves document 2's logits unchanged (and changes
    document 1's, so the comparison is not vacuous)."""
    model = make_tiny_model(attention=backend)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 200, (1, 24), generator=g)
    doc_ids = torch.tensor([[0] * 10 + [1] * 14], dtype=torch.int32)
    changed = tokens.clone()
    changed[0, :10] = torch.randint(0, 200, (10,), generator=g)
    with torch.no_grad():
        a, b = model(tokens, doc_ids=doc_ids), model(changed, doc_ids=doc_ids)
    torch.testing.assert_close(a[:, 10:], b[:, 10:], rtol=0, atol=1e-5)
    assert (a[:, :10] - b[:, :10]).abs().max() > 1e-2


def test_whole_model_backends_agree(make_tiny_model):
    tokens = torch.randint(0, 200, DOC_IDS.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        outs = [make_tiny_model(attention=b)(tokens, doc_ids=DOC_IDS) for b in ("sdpa", "math", "auto")]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])
