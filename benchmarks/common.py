"""Shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this imports as `common`)."""

from __future__ import annotations


def add_model_args(ap) -> None:
    """Model-shape flags; the defaults are configs/demo.yaml's dims."""
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: less spin under shared load)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--n-layers", type=int, default=8)
    ap.add_argument("--n-heads", type=int, default=6)
    ap.add_argument("--n-kv-heads", type=int, default=2)
    ap.add_argument("--ffn-dim", type=int, default=None, help="default: 8/3 dim rounded up to 64")


def model_config(args, max_seq_len: int, **kw):
    from mmtok.model.config import ModelConfig

    return ModelConfig(dim=args.dim, n_layers=args.n_layers, n_heads=args.n_heads, n_kv_heads=args.n_kv_heads,
                       ffn_dim=args.ffn_dim, max_seq_len=max_seq_len, **kw)
