"""Save and restore the whole training state: model, optimizer, scheduler, loader, RNG.

Model and optimizer go through torch.distributed.checkpoint (DCP) with *sharded* state dicts
(`get_state_dict` without full_state_dict): under FSDP2 every rank writes and reads only its own
shards; under DDP, DCP's planner deduplicates the replicated tensors so that each tensor is written
by one rank. No rank gathers the full state. DCP reshards on load, so a checkpoint saved by N
ranks loads on M ranks, under DDP, FSDP2 or in one process (`dcp/.metadata` describes every
tensor's global shape and where its pieces lie).

Beside the DCP files rank 0 writes small plain files: loader.pt (every rank's data-loader
state, torch.load(weights_only=True)), scheduler.pt (same), train_state.json (step, world size,
layout hash, config, per-rank RNG), config.yaml and tokenizer/. Then checksums.json (sha256 of
every file, each rank hashing the shard files it wrote), then the rename.

Atomicity: all ranks write into `checkpoints/.tmp-step_N/`; after every rank has written and
hashed its files, rank 0 writes the manifest, renames the directory to `step_N`, then replaces
`latest`. A kill at any moment leaves `latest` on a complete checkpoint.

Asynchronous saves (`Checkpointer(async_save=True)`, `train.async_checkpoint`): DCP stages a copy
of the state in host memory and a background thread writes it (then hashes this rank's files)
while training goes on. The pending save is finalized (manifest, rename, `latest`) by `poll()`
once every rank's write is done, or by `wait()`, which the next save and the end of training
call. The background writes use their own gloo process group so they never interleave with the
control collectives of the main thread.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from mmtok.checkpoint.consolidate import consolidate as consolidate_weights
from mmtok.checkpoint.consolidate import quiet_dcp
from mmtok.checkpoint.integrity import all_files, hash_files, raise_errors, verify, write_manifest
from mmtok.checkpoint.paths import (
    CHECKPOINTS,
    CONFIG_FILE,
    DCP_DIR,
    DCP_METADATA,
    LATEST,
    LOADER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    has_sharded_state,
    list_checkpoints,
    read_train_state,
    resolve_checkpoint,
    step_dir_name,
)

log = logging.getLogger("mmtok.checkpoint")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


# ---- RNG state (JSON-safe) -----------------------------------------------------------------------


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def reseed_for_new_world(seed: int, step: int, rank: int) -> None:
    """After a world-size change the saved per-rank RNG streams do not map onto the new ranks:
    each rank starts a fresh stream derived from (seed, step, rank)."""
    s = [seed, step, rank, 15485863]
    random.seed(hash(tuple(s)))
    np.random.seed(s)
    torch.manual_seed(int(np.random.SeedSequence(s).generate_state(1)[0]))


# ---- helpers -------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _own_dcp_files(tmp: Path, rank: int) -> list[str]:
    """The DCP files this rank wrote: its `__RANK_*.distcp` shard files (+ `.metadata` on rank 0)."""
    d = tmp / DCP_DIR
    files = [p.name for p in d.glob(f"__{rank}_*.distcp")]
    if rank == 0:
        files.append(DCP_METADATA)
    return [f"{DCP_DIR}/{f}" for f in sorted(files)]


@dataclass
class _Pending:
    step: int
    tmp: Path
    final: Path
    hashed: Future  # resolves to this rank's {relpath: digest} once its DCP write is done
    local_digests: dict  # rank 0: digests of the plain files it wrote


def sharded_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Model and optimizer state as this rank holds it (DTensor shards under FSDP2, the local
    replica under DDP), keyed by the bare model's parameter names."""
    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=False))


# ---- the checkpointer ----------------------------------------------------------------------------


class Checkpointer:
    """Saves and loads one run's checkpoints. Collective: every rank makes the same calls.

    `async_save`: DCP writes in a background thread; `verify`: check sha256 checksums on load.
    Create it on every rank at the same point (it creates process groups under torch.distributed).
    """

    def __init__(self, run_dir, keep_last_k: int = 3, async_save: bool = False, verify: bool = True):
        self.run_dir, self.keep_last_k = Path(run_dir), keep_last_k
        self.async_save, self.verify = async_save, verify
        self.rank, self.world = _rank(), _world()
        # DCP's own collectives (background thread when async) and ours (main thread) must not
        # share a group: two threads issuing collectives on one group interleave differently on
        # different ranks. Both gloo: DCP's async path needs a CPU backend.
        self.dcp_group = self.ctl_group = None
        if dist.is_initialized():
            self.dcp_group = dist.new_group(backend="gloo")
            self.ctl_group = dist.new_group(backend="gloo")
        self.pending: _Pending | None = None
        self.last: Path | None = None  # the newest step dir this checkpointer completed
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmtok-ckpt") if async_save else None

    # ---- collectives on the control group ------------------------------------------------------
    def _barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier(group=self.ctl_group)

    def _gather(self, obj) -> list:
        if not dist.is_initialized():
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj, group=self.ctl_group)
        return out

    # ---- save ------------------------------------------------------------------------------------
    def save(self, step: int, model: nn.Module, optimizer, scheduler, train_state: dict, config_yaml: str,
             tokenizer_dir) -> Path | None:
        """Start saving `step` (finishing any pending save first). Synchronous saves are complete,
        renamed and in `latest` when this returns; asynchronous ones when poll()/wait() say so.

        `train_state` holds this rank's JSON-safe extras (`data`: its loader state, plus anything
        else, the same on every rank); the loader and RNG states of all ranks are gathered."""
        self.wait()
        root = self.run_dir / CHECKPOINTS
        final = root / step_dir_name(step)
        tmp = root / f".tmp-{final.name}"
        per_rank = {"data": train_state.pop("data", None), "rng": rng_state()}
        gathered = self._gather(per_rank)
        if self.rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / DCP_DIR).mkdir(parents=True)
        self._barrier()

        model_sd, optim_sd = sharded_state_dicts(model, optimizer)
        no_dist = not dist.is_initialized()
        writer = dcp.FileSystemWriter(tmp / DCP_DIR, single_file_per_rank=True, sync_files=True, thread_count=1)
        state = {"model": model_sd, "optim": optim_sd}
        if self.async_save:
            with quiet_dcp():
                upload = dcp.async_save(state, storage_writer=writer, process_group=self.dcp_group, no_dist=no_dist)
            hashed = self._executor.submit(self._hash_after, upload, tmp)
        else:
            with quiet_dcp():
                dcp.save(state, storage_writer=writer, process_group=self.dcp_group, no_dist=no_dist)
            hashed = Future()
            hashed.set_result(hash_files(tmp, _own_dcp_files(tmp, self.rank)))

        local = {}
        if self.rank == 0:  # the small plain files, written while DCP may still be writing
            torch.save([r.pop("data") for r in gathered], tmp / LOADER_FILE)
            torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
            record = {**train_state, "step": step, "world_size": self.world, "format": "dcp",
                      "loader_state": LOADER_FILE, "ranks": gathered}  # fmt: skip
            (tmp / STATE_FILE).write_text(json.dumps(record))
            (tmp / CONFIG_FILE).write_text(config_yaml)
            if tokenizer_dir is not None:
                shutil.copytree(Path(tokenizer_dir), tmp / TOKENIZER_DIR, copy_function=_link_or_copy)
            plain = [f for f in all_files(tmp) if not f.startswith(DCP_DIR + "/")]
            for f in plain:
                _fsync_file(tmp / f)
            local = hash_files(tmp, plain)
        self.pending = _Pending(step, tmp, final, hashed, local)
        return None if self.async_save else self.wait()

    def _hash_after(self, upload: Future, tmp: Path) -> dict:
        upload.result()  # this rank's shard files are written and synced (and .metadata on rank 0)
        return hash_files(tmp, _own_dcp_files(tmp, self.rank))

    def poll(self) -> Path | None:
        """Finalize the pending save if every rank has finished writing it. Collective (cheap: one
        small all-reduce while a save is pending, nothing otherwise); returns the step dir or None."""
        if self.pending is None:
            return None
        done = torch.tensor([float(self.pending.hashed.done())])
        if dist.is_initialized():
            dist.all_reduce(done, op=dist.ReduceOp.MIN, group=self.ctl_group)
        return self.wait() if done.item() == 1.0 else None

    def wait(self) -> Path | None:
        """Finish the pending save, if any: gather checksums, write the manifest, rename, update
        `latest`, prune old steps. Collective. Returns the new step dir (on every rank)."""
        p, self.pending = self.pending, None
        if p is None:
            return None
        try:
            digests = p.hashed.result()
            error = None
        except Exception as e:  # a failed write must fail on every rank, not hang the others
            digests, error = {}, f"{type(e).__name__}: {e}"
        gathered = self._gather((digests, error))
        errors = [e for _, e in gathered if e]
        if errors:
            raise CheckpointError(f"saving {p.final} failed: {errors[0]}")
        if self.rank == 0:
            files = dict(p.local_digests)
            for d, _ in gathered:
                files.update(d)
            on_disk = set(all_files(p.tmp))
            if on_disk != set(files):
                raise CheckpointError(f"{p.tmp}: files written {sorted(on_disk ^ set(files))} were not hashed")
            write_manifest(p.tmp, files)
            for d in (p.tmp / DCP_DIR, p.tmp):
                _fsync_dir(d)
            root = p.final.parent
            if p.final.exists():  # re-saving a step (e.g. signal right after a scheduled save)
                shutil.rmtree(p.final)
            os.rename(p.tmp, p.final)
            pointer_tmp = root / f".{LATEST}.tmp"
            pointer_tmp.write_text(p.final.name + "\n")
            os.replace(pointer_tmp, root / LATEST)
            _fsync_dir(root)
            for old in list_checkpoints(self.run_dir)[: -self.keep_last_k] if self.keep_last_k > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
            log.info("saved checkpoint %s", p.final)
        self._barrier()
        self.last = p.final
        return p.final

    def close(self) -> Path | None:
        """Finish any pending save and stop the background thread. Collective. Returns the newest
        step dir this checkpointer completed (None if it saved nothing)."""
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        return self.last

    # ---- load ------------------------------------------------------------------------------------
    def verify_files(self, step_dir: Path) -> None:
        """Each rank checks its share of the listed files; any mismatch raises on every rank."""
        try:
            errors = verify(step_dir, rank=self.rank, world=self.world)
        except CheckpointError as e:
            errors = [str(e)]
        errors = [e for part in self._gather(errors) for e in part]
        raise_errors(sorted(set(errors)))

    def load(self, step_dir, model: nn.Module, optimizer, scheduler, check_state=None) -> dict:
        """Restore model, optimizer and scheduler (any parallelism, any world size) from a step dir;
        set this rank's RNG; return the train state with `data` for this rank's loader: its own
        state when the world size is unchanged, else {"per_rank": [every saved rank's state]}
        (the loader re-splits the rest of the epoch). `check_state(train_state)` runs once the
        files are verified and before any tensor is read (e.g. the tokenizer layout). Collective."""
        step_dir = resolve_checkpoint(step_dir)
        if not has_sharded_state(step_dir):
            raise CheckpointError(f"{step_dir} holds no training state ({DCP_DIR}/{DCP_METADATA} is missing): "
                                  "it cannot be resumed")
        if self.verify:  # before anything is parsed: a corrupt file is reported as corrupt
            self.verify_files(step_dir)
        state = read_train_state(step_dir)
        if check_state is not None:
            check_state(state)
        model_sd, optim_sd = sharded_state_dicts(model, optimizer)
        reader = dcp.FileSystemReader(step_dir / DCP_DIR)
        try:
            with quiet_dcp():
                dcp.load({"model": model_sd, "optim": optim_sd}, storage_reader=reader, process_group=self.dcp_group,
                         no_dist=not dist.is_initialized())  # fmt: skip
        except Exception as e:
            raise CheckpointError(f"{step_dir / DCP_DIR}: cannot load the model and optimizer state ({e})") from e
        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                       options=StateDictOptions(full_state_dict=False))  # fmt: skip
        for name, what in ((SCHEDULER_FILE, "scheduler state"), (LOADER_FILE, "data-loader states")):
            try:
                loaded = torch.load(step_dir / name, map_location="cpu", weights_only=True)
            except Exception as e:
                raise CheckpointError(f"{step_dir / name}: cannot read {what} ({e})") from e
            if name == SCHEDULER_FILE:
                scheduler.load_state_dict(loaded)
            else:
                loader_states = loaded
        if state["world_size"] == self.world:
            set_rng_state(state["ranks"][self.rank]["rng"])
            data = loader_states[self.rank]
        else:
            seed = int(((state.get("config") or {}).get("train") or {}).get("seed", 0))
            reseed_for_new_world(seed, int(state["step"]), self.rank)
            data = {"per_rank": loader_states}
            log.info("%s was saved by %d rank(s); resuming on %d: model and optimizer resharded by DCP, "
                     "the data position re-split", step_dir, state["world_size"], self.world)
        return {**state, "data": data}


# ---- one-call forms (no background saves) --------------------------------------------------------


def save_checkpoint(run_dir, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    train_state: dict, config_yaml: str, tokenizer_dir, keep_last_k: int,
                    consolidate: bool = False) -> Path:
    """Save one checkpoint synchronously (collective) and return its step dir. `consolidate`:
    also write model.safetensors (rank 0 reads the whole model; for inference)."""
    ck = Checkpointer(run_dir, keep_last_k=keep_last_k)
    path = ck.save(step, model, optimizer, scheduler, train_state, config_yaml, tokenizer_dir)
    ck.close()
    if consolidate:
        if _rank() == 0:
            consolidate_weights(path, verify=False)
        ck._barrier()
    return path


def load_checkpoint(step_dir, model: nn.Module, optimizer, scheduler, verify: bool = True) -> dict:
    """Restore a step dir into model / optimizer / scheduler (see Checkpointer.load)."""
    return Checkpointer(Path(step_dir).parent, verify=verify).load(step_dir, model, optimizer, scheduler)
