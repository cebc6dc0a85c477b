"""Export an mmtok model as a HuggingFace `LlamaForCausalLM` directory.

mmtok's Transformer computes exactly what `LlamaForCausalLM` computes (same RoPE convention, same
RMSNorm), so export is a renaming of weights plus a `LlamaConfig`; no permutation. The result:

    OUT/config.json          LlamaConfig (bos/eos/pad ids from the vocabulary layout when given)
    OUT/model.safetensors    weights under HF names (no lm_head when embeddings are tied)
    OUT/mmtok.json           the mmtok ModelConfig and layout hash, to trace the export back
    OUT/tokenizer/           the mmtok tokenizer directory (text + audio vocabulary), re-saved

`transformers` is imported only inside the functions that build its config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from mmtok.model.config import ModelConfig
from mmtok.tokenizer.multimodal import MultimodalTokenizer

# mmtok parameter-name fragment -> HF Llama fragment, applied in order.
_RENAMES = (
    ("tok_embeddings.", "model.embed_tokens."),
    ("layers.", "model.layers."),
    ("attention_norm.", "input_layernorm."),
    ("ffn_norm.", "post_attention_layernorm."),
    ("attention.wq.", "self_attn.q_proj."),
    ("attention.wk.", "self_attn.k_proj."),
    ("attention.wv.", "self_attn.v_proj."),
    ("attention.wo.", "self_attn.o_proj."),
    ("feed_forward.w1.", "mlp.gate_proj."),
    ("feed_forward.w3.", "mlp.up_proj."),
    ("feed_forward.w2.", "mlp.down_proj."),
    ("output.", "lm_head."),
)


def hf_name(name: str) -> str:
    if name.startswith("norm."):
        return "model." + name
    for ours, theirs in _RENAMES:
        name = name.replace(ours, theirs, 1)
    return name


def hf_state_dict(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A bare Transformer's weights under HF Llama names (a tied output weight is left out, as
    HF expects: it re-ties lm_head to the embedding on load)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if model.config.tie_embeddings and name == "output.weight":
            continue
        t = tensor.detach().to("cpu", dtype=dtype or tensor.dtype).contiguous()
        out[hf_name(name)] = t
    return out


def llama_config(config: ModelConfig, layout=None, dtype: torch.dtype = torch.float32):
    """The `transformers.LlamaConfig` computing what `config` computes."""
    from transformers import LlamaConfig

    special = {}
    if layout is not None:
        special = dict(bos_token_id=layout.bos_id, eos_token_id=layout.eos_id, pad_token_id=layout.pad_id)
    return LlamaConfig(
        architectures=["LlamaForCausalLM"],  # what AutoModelForCausalLM / pipelines instantiate
        vocab_size=config.vocab_size,
        hidden_size=config.dim,
        intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
        tie_word_embeddings=config.tie_embeddings,
        initializer_range=config.init_std,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        dtype=str(dtype).removeprefix("torch."),
        **special,
    )


def export_hf(model, config: ModelConfig, out_dir, tokenizer=None, dtype: torch.dtype | None = None,
              overwrite: bool = False) -> Path:
    """Write `model` (a bare Transformer built from `config`) as a LlamaForCausalLM directory.

    tokenizer: a `MultimodalTokenizer` or its directory; it is saved under OUT/tokenizer/ and its
        layout sets the special ids in config.json (and must fit in the model's vocabulary).
    dtype: weight dtype in the file (default: the model's).
    Everything is written to a sibling temporary directory first and renamed into place, so
    `out_dir` is either the complete export or untouched; an existing non-empty `out_dir` is
    replaced only with `overwrite=True`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file, not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = MultimodalTokenizer.from_pretrained(tokenizer)
    layout = tokenizer.layout if tokenizer is not None else None
    if layout is not None:
        config.for_vocab(len(layout))  # raises if the model can't hold the tokenizer's ids

    weights = hf_state_dict(model, dtype)
    dtype = weights["model.embed_tokens.weight"].dtype
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        llama_config(config, layout, dtype).save_pretrained(tmp)
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        meta = {"model_config": config.to_dict(), "layout_hash": layout.hash if layout else None}
        (tmp / "mmtok.json").write_text(json.dumps(meta, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "tokenizer")
        if out.exists():  # swap: the old export stays whole until the new one is in place
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
