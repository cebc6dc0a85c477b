"""A checkpoint for inference: the model in eval mode, its run config and its tokenizer, read
from one step directory without torch.distributed."""

from __future__ import annotations

from pathlib import Path

import yaml

from mmtok.checkpoint.paths import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    read_train_state,
    resolve_checkpoint,
)
from mmtok.checkpoint.weights import load_weights
from mmtok.config import RunConfig, from_dict
from mmtok.tokenizer.multimodal import MultimodalTokenizer


def load_for_inference(path, device="cpu"):
    """(model in eval mode on `device`, RunConfig, MultimodalTokenizer) from a run or step dir.

    Raises CheckpointError for a missing/incomplete/corrupt checkpoint and LayoutMismatchError
    when the checkpoint's tokenizer layout differs from the one it was trained with.
    """
    step_dir = resolve_checkpoint(path)
    state = read_train_state(step_dir)
    try:
        config = from_dict(RunConfig, yaml.safe_load((step_dir / CONFIG_FILE).read_text()))
    except Exception as e:
        raise CheckpointError(f"{step_dir / CONFIG_FILE}: cannot read the run config ({e})") from e
    tok_dir = step_dir / TOKENIZER_DIR
    if not tok_dir.is_dir():
        if not config.tokenizer or not Path(config.tokenizer).is_dir():
            raise CheckpointError(f"{step_dir} has no {TOKENIZER_DIR}/ and its config names none that exists")
        tok_dir = Path(config.tokenizer)
    tokenizer = MultimodalTokenizer.from_pretrained(tok_dir)
    tokenizer.layout.require(state.get("layout_hash"), f"checkpoint {step_dir}")
    model = config.model.build()
    weights = load_weights(step_dir / MODEL_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{step_dir / MODEL_FILE}: weights do not fit the model config ({e})") from e
    return model.to(device).eval(), config, tokenizer
