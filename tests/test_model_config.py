"""ModelConfig: validation errors, vocabulary sizing, parameter and FLOP counts against torch."""

import re

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mmtok.model.config import ModelConfig


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(dim=100, n_heads=3), "n_heads=3 does not divide dim=100"),
        (dict(dim=64, n_heads=4, n_kv_heads=3), "n_kv_heads=3 must be positive and divide n_heads=4"),
        (dict(dim=60, n_heads=4), "head_dim=15"),
        (dict(attention="flash"), "attention='flash'"),
        (dict(n_layers=0), "n_layers must be positive"),
        (dict(ffn_dim=0), "ffn_dim must be positive"),
        (dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_configs_raise_clear_errors(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelConfig(vocab_size=128, **fields).validate()


def test_vocab_comes_from_the_tokenizer_and_may_not_be_smaller(tiny_layout):
    n = len(tiny_layout)
    with pytest.raises(ValueError, match="vocab_size is not set"):
        ModelConfig().build()
    assert ModelConfig().for_vocab(n).vocab_size == n
    assert ModelConfig(vocab_size=n + 64).for_vocab(n).vocab_size == n + 64
    with pytest.raises(ValueError, match=f"smaller than the tokenizer's {n} ids"):
        ModelConfig(vocab_size=n - 1).for_vocab(n)


def test_from_dict_round_trip_and_unknown_fields():
    cfg = ModelConfig(vocab_size=320, dim=96, n_heads=6, n_kv_heads=2, tie_embeddings=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['n_head'\]"):
        ModelConfig.from_dict({"n_head": 4})


@pytest.mark.parametrize("tied", [False, True])
def test_num_params_counts_the_built_model(tied):
    cfg = ModelConfig(vocab_size=320, dim=64, n_layers=3, n_heads=4, n_kv_heads=1, tie_embeddings=tied)
    model = cfg.build()
    assert cfg.num_params() == model.num_params() == sum(p.numel() for p in model.parameters())
    assert cfg.num_params(embedding=False) == model.num_params() - (0 if tied else 320 * 64)


def test_flops_per_token_matches_torch_flop_counter():
    """6N + 12 L d T against the matmul FLOPs torch counts in a real forward + backward."""
    cfg = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, attention="math")
    model = cfg.build()
    b, t = 2, 32
    tokens = torch.randint(0, cfg.vocab_size, (b, t))
    counter = FlopCounterMode(display=False)
    with counter:
        model(tokens).sum().backward()
    measured = counter.get_total_flops() / (b * t)
    # The counter sees every matmul; 6N assumes 3 matmuls per weight, so they agree closely.
    assert measured == pytest.approx(cfg.flops_per_token(t), rel=0.01)


def test_packed_flops_count_attention_per_document_as_the_sdpa_backend_computes_it():
    """ModelConfig.flops(seqlens) against torch's counter on a packed row of two documents: the
    sdpa backend attends per document, so attention costs 12 L d (n1^2 + n2^2), not 12 L d T^2."""
    cfg = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, attention="sdpa")
    model = cfg.build()
    lens = [40, 24]
    tokens = torch.randint(0, cfg.vocab_size, (1, sum(lens)))
    positions = torch.cat([torch.arange(n) for n in lens])[None]
    doc_ids = torch.cat([torch.full((n,), i, dtype=torch.int32) for i, n in enumerate(lens)])[None]
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):  # torch's math kernel: matmuls the counter can see
        model(tokens, positions, doc_ids).sum().backward()
    assert counter.get_total_flops() == pytest.approx(cfg.flops(lens), rel=0.01)
    assert cfg.flops([64]) == pytest.approx(cfg.flops_per_token(64) * 64)  # one document: the PaLM formula
    assert cfg.flops(lens) < cfg.flops([64])
