"""ModelConfig: validation errors, vocabulary sizing, parameter and FLOP counts against torch."""

import pytest
import torch
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
    ],
)
def test_invalid_configs_raise_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
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
