"""The training loader: shards -> samples -> documents -> packed rows -> `PackedBatch`es.

    cfg = DataConfig(train_shards="shards/shards.jsonl#train", seq_len=1024, batch_size=8)
    loader = cfg.build(tokenizer, rank, world_size)
    for step, batch in enumerate(loader):          # PackedBatch, (batch_size, seq_len)
        ...
        if step % 1000 == 0:
            save(..., data=loader.state_dict())   # then loader.load_state_dict(...) resumes exactly

Each DataLoader worker runs a whole `WorkerPipeline` (stream, templates, packer, batching) and
yields finished batches with its state after that batch; the loader remembers the state of the
last batch it handed out from each worker. torch's DataLoader takes batches from workers round-robin,
so global batch n is batch n // W of logical worker n % W. On resume after N batches, DataLoader
worker j plays logical worker (j + N) % W from its saved state, so the next batch is exactly the
one an uninterrupted run yields at N + 1. A state is tied to world size and worker count (the
data split depends on both); loading one with others is refused with an error saying so.

Another world size (elastic resume): `load_state_dict({"per_rank": [state of every saved rank]})`
re-splits. The leftover of the epoch(s) in progress (shards no saved stream finished, each from
the sample it stopped at), the samples in the saved shuffle buffers and the documents in the saved
packers' pools are dealt to this run's ranks and workers; then every stream goes on with the next
epoch, split the new way (`mmtok.data.stream.resplit_streams`). No sample of the interrupted
epoch is repeated and none is skipped; batches are not those of an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from mmtok.data.batch import PackedBatch
from mmtok.data.packing import Packer, collate_rows
from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards, resplit_streams
from mmtok.data.templates import TemplateConfig, task_document

STATE_VERSION = 1


@dataclass
class DataConfig:
    train_shards: str | list[str] = ""  # shard URLs: index "shards.jsonl#train", dir, brace pattern, list
    valid_shards: str | list[str] | None = None  # same forms; `build(split="valid")` reads these
    seq_len: int | None = None  # positions per row; in a RunConfig, None = model.max_seq_len
    batch_size: int | None = None  # rows per batch, per rank; in a RunConfig, None = train.micro_batch_size
    shuffle_buffer: int = 256  # samples held for shuffling, per worker
    seed: int | None = None  # shard order, shuffling, templates, crops; in a RunConfig, None = train.seed
    workers: int = 2  # DataLoader worker processes per rank (0: in the main process)
    resampled: bool = False  # draw shards with replacement (any shard count; needs epoch_samples)
    epoch_samples: int | None = None  # resampled: samples per epoch over all ranks and workers
    epochs: int | None = None  # stop after this many epochs (None: forever; training counts steps)
    templates: TemplateConfig = field(default_factory=TemplateConfig)  # template mix, loss mask
    pack_pool: int = 16  # documents the packer chooses from (best fit)
    min_split: int = 16  # a row with this many free positions left gets a split document
    prefetch: int = 2  # batches each worker prepares ahead
    split_by: str = "shard"  # "shard" (whole shards per rank/worker) or "sample" (any shard count)

    def __post_init__(self):
        if isinstance(self.templates, dict):  # from YAML
            self.templates = TemplateConfig(**self.templates)

    def require_resolved(self) -> None:
        unset = [name for name in ("seq_len", "batch_size", "seed") if getattr(self, name) is None]
        if unset:
            raise ValueError(f"DataConfig.{', '.join(unset)} unset: set them, or build the config "
                             "through a RunConfig (mmtok.config.load_config), which fills them in")

    def stream_config(self) -> StreamConfig:
        return StreamConfig(seed=self.seed, shuffle_buffer=self.shuffle_buffer, resampled=self.resampled,
                            epoch_samples=self.epoch_samples, epochs=self.epochs, split_by=self.split_by)  # fmt: skip

    def build(self, tokenizer, rank: int = 0, world_size: int = 1, split: str = "train") -> PackedLoader:
        """The loader for this rank (checks the shard count against ranks x workers at once).

        split="valid" reads valid_shards once (epochs=1, no shuffling or resampling, no worker
        processes), every rank taking every world_size-th sample."""
        self.require_resolved()
        spec = self.train_shards if split == "train" else self.valid_shards
        if not spec:
            raise ValueError(f"DataConfig has no {split}_shards")
        urls = resolve_shards(spec)
        if not urls:
            raise ValueError(f"no shards found for {split}_shards={spec!r}")
        cfg = self
        if split != "train":  # evaluation: one deterministic pass in the main process, the samples
            # dealt round-robin to ranks, so a valid set of one shard works on any number of ranks
            cfg = replace(self, epochs=1, resampled=False, shuffle_buffer=0, workers=0, split_by="sample")
        ShardStream(urls, cfg.stream_config(), rank, world_size, 0, max(1, cfg.workers))  # fail fast
        return PackedLoader(cfg, tokenizer, urls, rank, world_size)


class WorkerPipeline:
    """One logical worker's whole pipeline, with exact state."""

    def __init__(self, cfg: DataConfig, tok, urls: list[str], rank: int, world: int, worker: int, workers: int):
        self.cfg, self.tok = cfg, tok
        self.stream = ShardStream(urls, cfg.stream_config(), rank, world, worker, workers, tok.layout.hash)
        self.packer = Packer(tok.layout, cfg.seq_len, cfg.pack_pool, cfg.min_split)
        self.rng = np.random.default_rng([cfg.seed, rank, worker, 104729])  # templates and crops
        self.batches = 0  # batches this worker has produced

    def __iter__(self) -> Iterator[PackedBatch]:
        samples = iter(self.stream)
        rows, exhausted = [], False
        while True:
            while not self.packer.ready() and not exhausted:
                try:
                    s = next(samples)
                except StopIteration:
                    exhausted = True
                    break
                doc = task_document(self.tok, s.meta, s.clips, s.captions, self.rng, self.cfg.templates,
                                    self.cfg.seq_len + 1)
                if doc is not None:  # None: the task mix leaves this sample out
                    self.packer.add(doc)
            if exhausted and not len(self.packer):
                return  # finite stream: a last partial batch is dropped (like drop_last)
            rows.append(self.packer.pop_row())
            if len(rows) == self.cfg.batch_size:
                self.batches += 1
                yield collate_rows(rows)
                rows = []

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "packer": self.packer.state_dict(),
                "rng": self.rng.bit_generator.state, "batches": self.batches}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.packer.load_state_dict(state["packer"])
        self.rng.bit_generator.state = state["rng"]
        self.batches = state["batches"]


class _PipelineDataset(torch.utils.data.IterableDataset):
    """What DataLoader workers run: yields (logical worker, batch, state after the batch)."""

    def __init__(self, cfg: DataConfig, tok, urls, rank: int, world: int):
        self.cfg, self.tok, self.urls, self.rank, self.world = cfg, tok, urls, rank, world
        self.rotation = 0  # logical worker = (DataLoader worker id + rotation) % W
        self.resume: dict[int, dict] = {}  # logical worker -> WorkerPipeline state

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n = max(1, self.cfg.workers)
        if info is not None:
            torch.set_num_threads(1)  # workers are processes; one thread each
        logical = ((info.id if info else 0) + self.rotation) % n
        pipe = WorkerPipeline(self.cfg, self.tok, self.urls, self.rank, self.world, logical, n)
        if logical in self.resume:
            pipe.load_state_dict(self.resume[logical])
        for batch in pipe:
            yield logical, batch, pipe.state_dict()


def _identity(x):
    return x


def _tensors(obj, to_torch: bool):
    """numpy arrays <-> tensors, recursively. Workers keep numpy (pickled inline through the
    DataLoader queue: sending tensors costs a shared-memory file per array, which made the loader
    10x slower); checkpoints get tensors (torch.load(weights_only=True) refuses numpy)."""
    if isinstance(obj, dict):
        return {k: _tensors(v, to_torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensors(v, to_torch) for v in obj)
    if to_torch and isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if not to_torch and isinstance(obj, torch.Tensor):
        return obj.numpy()
    return obj


class PackedLoader:
    """Iterable of `PackedBatch` for one rank, with `state_dict()` / `load_state_dict()`."""

    def __init__(self, cfg: DataConfig, tok, urls: list[str], rank: int, world_size: int):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.dataset = _PipelineDataset(cfg, tok, urls, rank, world_size)
        self.batches = 0  # batches handed out since the very start (over resumes)
        self.worker_states: dict[int, dict] = {}
        self.corrupt = 0  # corrupt samples/shards skipped, as of the last batch (summed over workers)

    def __iter__(self) -> Iterator[PackedBatch]:
        n = max(1, self.cfg.workers)
        self.dataset.rotation = self.batches % n
        self.dataset.resume = dict(self.worker_states)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, num_workers=self.cfg.workers, collate_fn=_identity,
            prefetch_factor=self.cfg.prefetch if self.cfg.workers else None,
            multiprocessing_context="fork" if self.cfg.workers else None,
        )  # fmt: skip
        for logical, batch, state in loader:
            self.worker_states[logical] = state
            self.batches += 1
            self.corrupt = sum(s["stream"]["corrupt"] for s in self.worker_states.values())
            yield batch

    def state_dict(self) -> dict:
        """Everything needed to continue after the last batch handed out (torch.save-able and
        loadable with torch.load(weights_only=True))."""
        cfg = asdict(self.cfg)
        fingerprint = {k: cfg[k] for k in ("seq_len", "batch_size", "seed", "shuffle_buffer", "resampled", "split_by")}
        return {"version": STATE_VERSION, "rank": self.rank, "world_size": self.world_size,
                "workers": max(1, self.cfg.workers), "batches": self.batches, "config": fingerprint,
                "n_shards": len(self.dataset.urls), "worker_states": _tensors(self.worker_states, True)}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (this rank's saved state), or from {"per_rank": [...]}: the states
        of every rank of a saved run, re-split if its world size or worker count differs."""
        if "per_rank" in state:
            state = self._from_ranks(state["per_rank"])
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')} != {STATE_VERSION}")
        mine = self.state_dict()
        for key, what in (("world_size", "world size"), ("workers", "data worker count"),
                          ("rank", "rank"), ("n_shards", "shard count")):  # fmt: skip
            if state[key] != mine[key]:
                raise ValueError(
                    f"loader state was saved with {what} {state[key]}, this run has {mine[key]}: the "
                    f"data split depends on it, so exact resume is impossible. Resume with the same "
                    f"{what}, or start the data stream afresh (skip load_state_dict)"
                )
        if state["config"] != mine["config"]:
            raise ValueError(f"loader state was saved with data config {state['config']}, this run has "
                             f"{mine['config']}")  # fmt: skip
        self.batches = state["batches"]
        self.worker_states = {int(k): _tensors(v, False) for k, v in state["worker_states"].items()}

    def _from_ranks(self, states: list[dict]) -> dict:
        """This rank's state out of every saved rank's (see the module docstring)."""
        mine = self.state_dict()
        if not states:
            raise ValueError("no loader states to resume from")
        old_world, old_workers = states[0]["world_size"], states[0]["workers"]
        if (old_world, old_workers) == (self.world_size, mine["workers"]):
            return next((s for s in states if s["rank"] == self.rank), states[0])  # exact resume
        for s in states:
            if s.get("version") != STATE_VERSION or s["n_shards"] != mine["n_shards"] or s["config"] != mine["config"]:
                raise ValueError(f"loader state of rank {s.get('rank')} was saved with another data set, "
                                 f"config or version ({s.get('n_shards')} shards, {s.get('config')}); this run "
                                 f"has {mine['n_shards']} shards, {mine['config']}")  # fmt: skip
        n = mine["workers"]
        old = {}  # (rank, worker) -> WorkerPipeline state (numpy)
        for s in states:
            for w, ws in s["worker_states"].items():
                old[(s["rank"], int(w))] = _tensors(ws, False)
        streams = resplit_streams({k: v["stream"] for k, v in old.items()}, self.dataset.urls,
                                  self.cfg.stream_config(), old_world, old_workers, self.world_size, n)  # fmt: skip
        pool = [doc for key in sorted(old) for doc in old[key]["packer"]["pool"]]
        epoch = next(iter(streams.values()))["epoch"]
        worker_states = {}
        for w in range(n):
            k = self.rank * n + w
            rng = np.random.default_rng([self.cfg.seed, self.rank, w, 104729, epoch]).bit_generator.state
            worker_states[w] = {"stream": streams[(self.rank, w)], "packer": {"pool": pool[k :: self.world_size * n]},
                                "rng": rng, "batches": 0}  # fmt: skip
        return {**mine, "batches": 0, "worker_states": _tensors(worker_states, True)}
