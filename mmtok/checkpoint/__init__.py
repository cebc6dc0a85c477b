"""Checkpoints: one self-contained directory per step, written aside and renamed into place.

    OUT/checkpoints/
      step_000100/
        dcp/                 model + AdamW state as torch.distributed.checkpoint files, sharded
          .metadata            by the saving ranks (__RANK_0.distcp each); reshards on load
          __0_0.distcp ...
        model.safetensors    consolidated fp32 weights for inference (the run's last step, or
                              `mmtok checkpoint consolidate`); names as in the bare Transformer
        scheduler.pt         LambdaLR state; torch.load(weights_only=True)
        loader.pt            [data-loader state of rank 0, rank 1, ...] (they hold tensors, so
                              not JSON); torch.load(weights_only=True)
        train_state.json     step, layout hash, world size, config, per-rank RNG states
        config.yaml          the RunConfig (vocab size resolved)
        tokenizer/           the tokenizer directory (hard links to OUT/tokenizer when possible)
        checksums.json       sha256 of every other file (written last; verified on load)
      latest                 text file naming the newest complete step directory

    paths.py        names, finding and resolving step directories (no torch.distributed)
    integrity.py    checksums.json: hashing, verification
    weights.py      model.safetensors (tied weights stored once)
    consolidate.py  DCP shards -> model.safetensors in one process, no process group
    state.py        Checkpointer: sharded (optionally asynchronous) save / restore of the whole
                    training state, collective under torch.distributed
    inference.py    a step directory -> (model, RunConfig, tokenizer), no torch.distributed

Training (`mmtok.training`) and inference (`mmtok.generate`, `mmtok.export`, `mmtok.cli`) both
sit above this package; it knows nothing of either.
"""

from mmtok.checkpoint.consolidate import consolidate, consolidated_state_dict
from mmtok.checkpoint.inference import load_for_inference
from mmtok.checkpoint.integrity import verify
from mmtok.checkpoint.paths import (
    CHECKPOINTS,
    CHECKSUMS_FILE,
    CONFIG_FILE,
    DCP_DIR,
    LATEST,
    LOADER_FILE,
    MODEL_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    has_sharded_state,
    latest_checkpoint,
    list_checkpoints,
    read_train_state,
    remove_partial_checkpoints,
    resolve_checkpoint,
    step_dir_name,
)
from mmtok.checkpoint.state import Checkpointer, load_checkpoint, save_checkpoint
from mmtok.checkpoint.weights import load_weights, save_weights

__all__ = [
    "CHECKPOINTS", "CHECKSUMS_FILE", "CONFIG_FILE", "DCP_DIR", "LATEST", "LOADER_FILE", "MODEL_FILE",
    "SCHEDULER_FILE", "STATE_FILE", "TOKENIZER_DIR", "CheckpointError", "Checkpointer", "consolidate",
    "consolidated_state_dict", "has_sharded_state", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
    "load_for_inference", "load_weights", "read_train_state", "remove_partial_checkpoints",
    "resolve_checkpoint", "save_checkpoint", "save_weights", "step_dir_name", "verify",
]
