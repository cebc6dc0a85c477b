"""A checkpoint for inference: the model in eval mode, its run config and its tokenizer, read
from one step directory without torch.distributed.

It reads the consolidated `model.safetensors`. A step that holds only sharded DCP state (an
intermediate checkpoint) is refused with the command that consolidates it: consolidation writes
into the checkpoint directory (which may be read-only, shared with a running job, or about to be
pruned by it) and reads the whole model, so it is an explicit step rather than a side effect.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mmtok.checkpoint.integrity import raise_errors
from mmtok.checkpoint.integrity import verify as check_checksums
from mmtok.checkpoint.paths import (
    CONFIG_FILE,
    DCP_DIR,
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    has_sharded_state,
    read_train_state,
    resolve_checkpoint,
)
from mmtok.checkpoint.weights import load_weights
from mmtok.config import RunConfig, from_dict
from mmtok.tokenizer.multimodal import MultimodalTokenizer


def load_for_inference(path, device="cpu", verify: bool = True):
    """(model in eval mode on `device`, RunConfig, MultimodalTokenizer) from a run or step dir.

    Raises CheckpointError for a missing/incomplete/corrupt checkpoint (with `verify`, every file
    read is checked against checksums.json first) and LayoutMismatchError when the checkpoint's
    tokenizer layout differs from the one it was trained with.
    """
    step_dir = resolve_checkpoint(path)
    if not (step_dir / MODEL_FILE).is_file():
        hint = (f"; it holds sharded training state ({DCP_DIR}/): run `mmtok checkpoint consolidate {step_dir}` "
                "to write the weights" if has_sharded_state(step_dir) else "")
        raise CheckpointError(f"checkpoint {step_dir} is incomplete: missing {MODEL_FILE}{hint}")
    if verify:  # everything read below but train_state.json, which the layout check reads first
        tok_files = sorted(p.relative_to(step_dir).as_posix() for p in (step_dir / TOKENIZER_DIR).rglob("*")
                           if p.is_file())
        raise_errors(check_checksums(step_dir, [MODEL_FILE, CONFIG_FILE, *tok_files]))
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
    if verify:  # after the layout check: a foreign checkpoint gets the more useful error
        raise_errors(check_checksums(step_dir, [STATE_FILE]))
    model = config.model.build()
    weights = load_weights(step_dir / MODEL_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{step_dir / MODEL_FILE}: weights do not fit the model config ({e})") from e
    return model.to(device).eval(), config, tokenizer
