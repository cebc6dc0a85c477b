"""Checkpoints: one self-contained directory per step, written aside and renamed into place.

    OUT/checkpoints/
      step_000100/
        model.safetensors    full (unsharded) fp32 weights, names as in the bare Transformer
        optim.pt             {"optimizer": full AdamW state keyed by parameter name,
                              "scheduler": LambdaLR state}; torch.load(weights_only=True)
        loader.pt            [data-loader state of rank 0, rank 1, ...] (they hold tensors, so
                              not JSON); torch.load(weights_only=True)
        train_state.json     step, layout hash, world size, config, per-rank RNG states
        config.yaml          the RunConfig (vocab size resolved)
        tokenizer/           the tokenizer directory (hard links to OUT/tokenizer when possible)
      latest                 text file naming the newest complete step directory

    paths.py      names, finding and resolving step directories (no torch.distributed)
    weights.py    model.safetensors (tied weights stored once)
    state.py      save / restore the whole training state (collective under torch.distributed)
    inference.py  a step directory -> (model, RunConfig, tokenizer), no torch.distributed

Training (`mmtok.training`) and inference (`mmtok.generate`, `mmtok.export`, `mmtok.cli`) both
sit above this package; it knows nothing of either.
"""

from mmtok.checkpoint.inference import load_for_inference
from mmtok.checkpoint.paths import (
    CHECKPOINTS,
    CONFIG_FILE,
    LATEST,
    LOADER_FILE,
    MODEL_FILE,
    OPTIM_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    read_train_state,
    remove_partial_checkpoints,
    resolve_checkpoint,
    step_dir_name,
)
from mmtok.checkpoint.state import load_checkpoint, save_checkpoint
from mmtok.checkpoint.weights import load_weights, save_weights

__all__ = [
    "CHECKPOINTS", "CONFIG_FILE", "LATEST", "LOADER_FILE", "MODEL_FILE", "OPTIM_FILE", "STATE_FILE",
    "TOKENIZER_DIR", "CheckpointError", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
    "load_for_inference", "load_weights", "read_train_state", "remove_partial_checkpoints",
    "resolve_checkpoint", "save_checkpoint", "save_weights", "step_dir_name",
]
