"""Streaming samples from WebDataset shards: split by rank and worker (or resampled), shuffled.

Shards are read with webdataset's own tar readers (`url_opener` -> `tar_file_expander` ->
`group_by_keys`), so local paths, http(s) URLs and `pipe:` commands (object stores:
`pipe:aws s3 cp s3://bucket/train-000000.tar -`) all work. What is ours is the order and the state,
because exact resume needs both to be explicit:

- non-resampled: every epoch, all ranks shuffle the shard list with the same seed, then rank r
  takes shards[r::world] and worker w of it takes [w::workers] (webdataset's split_by_node then
  split_by_worker); across ranks x workers each sample is seen exactly once per epoch.
- resampled: each (rank, worker) draws shards with replacement from its own seeded generator and
  an epoch is `epoch_samples / (world * workers)` samples; any shard count works.
- split_by="sample" (evaluation sets with few shards): everyone reads every shard and keeps
  every (world*workers)-th sample; also exactly once per epoch, for any shard count.
- a shuffle buffer (reservoir style) mixes samples across shards.
- a corrupt sample (bad npy/json, missing member) or a broken tar (truncated, unreadable) is
  logged, counted in `corrupt`, and skipped.

`ShardStream.state_dict()` is everything needed to continue exactly: epoch, shard position, samples
already read from the current shard, the buffered samples and the generator state.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener

from mmtok.data.manifest import captions_of
from mmtok.tokenizer.codes import AudioCodes
from mmtok.tokenizer.layout import LayoutMismatchError

log = logging.getLogger(__name__)


class CorruptSampleError(ValueError):
    """A shard sample that cannot be decoded (the message names shard and key)."""


def resolve_shards(spec) -> list[str]:
    """Shard URLs from: a list, a brace pattern ("train-{000000..000009}.tar"), several joined by
    "::", a `shards.jsonl` index (with `split=` filtering by "index.jsonl#split"), or a directory
    (every *.tar in it, sorted)."""
    if isinstance(spec, (list, tuple)):
        return [u for s in spec for u in resolve_shards(s)]
    spec = str(spec)
    path, _, split = spec.partition("#")
    if path.endswith(".jsonl") and Path(path).is_file():
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        base = Path(path).parent
        return [str(base / r["url"]) for r in rows if not split or r.get("split") == split]
    if Path(spec).is_dir():
        return sorted(str(p) for p in Path(spec).glob("*.tar"))
    return expand_urls(spec)


@dataclass
class Sample:
    key: str  # WebDataset key (unique in the data set)
    url: str  # shard it came from
    codes: AudioCodes
    text: str
    meta: dict  # the shard's json (manifest fields, duration, codec, ...)
    more: list[AudioCodes] = field(default_factory=list)  # a playlist's 2nd, 3rd, ... clips (codes1.npy, ...)

    @property
    def clips(self) -> list[AudioCodes]:
        """Every clip of the sample: one, or a playlist's 2 to 8."""
        return [self.codes, *self.more]

    @property
    def captions(self) -> list[str]:
        """The caption, then the manifest's `references` (more captions of the clip) if any."""
        return captions_of(self.text, self.meta.get("references"))

    def to_state(self) -> dict:
        c = self.codes
        state = {"key": self.key, "url": self.url, "codes": c.codes.astype(np.int16),
                 "n_samples": c.n_samples, "sample_rate": c.sample_rate, "codec": c.codec, "scales": c.scales,
                 "frames_per_segment": c.frames_per_segment, "text": self.text,
                 "meta": json.dumps(self.meta)}  # fmt: skip
        if c.semantic is not None:
            state["semantic"] = c.semantic.astype(np.int16)
        if self.more:  # only playlists carry more clips; other samples' state has no `more`
            state["more"] = [{"codes": m.codes.astype(np.int16), "n_samples": m.n_samples, "scales": m.scales,
                              "semantic": m.semantic} for m in self.more]  # fmt: skip
        return state

    @classmethod
    def from_state(cls, s: dict) -> Sample:
        codes = AudioCodes(s["codes"], s["n_samples"], s["sample_rate"], s["codec"], s["scales"],
                           s["frames_per_segment"], semantic=s.get("semantic"))  # fmt: skip
        more = [AudioCodes(m["codes"], m["n_samples"], s["sample_rate"], s["codec"], m["scales"], s["frames_per_segment"],
                           semantic=m.get("semantic")) for m in s.get("more", [])]  # fmt: skip
        return cls(s["key"], s["url"], codes, s["text"], json.loads(s["meta"]), more)


def _clip_codes(raw: dict, n: int, n_samples: int, meta: dict, where: str) -> AudioCodes:
    """Clip n of a sample (0: codes.npy, n: a playlist's codesN.npy) with its scales and semantic ids."""
    suffix = str(n or "")
    what = f"codes{suffix}.npy" if not n else f"playlist clip {n}"

    def member(name: str):
        key = f"{name}{suffix}.npy"
        return np.load(io.BytesIO(raw[key]), allow_pickle=False) if key in raw else None

    try:
        codes, scales, semantic = member("codes"), member("scales"), member("semantic")
    except Exception as e:
        raise CorruptSampleError(f"{where}: cannot decode {what} ({type(e).__name__}: {e})") from None
    if codes is None:
        raise CorruptSampleError(f"{where}: missing codes{suffix}.npy")
    if codes.ndim != 2 or codes.shape[1] == 0 or codes.min() < 0:
        raise CorruptSampleError(f"{where}: codes{suffix}.npy has shape {codes.shape}, expected (K, T>0) of codes >= 0")
    if semantic is not None and (semantic.shape != (codes.shape[1],) or semantic.min() < 0):
        raise CorruptSampleError(f"{where}: semantic{suffix}.npy has shape {semantic.shape}, expected "
                                 f"({codes.shape[1]},) ids >= 0 (one per frame)")
    return AudioCodes(codes.astype(np.int64), n_samples, int(meta["sample_rate"]), meta["codec"], scales,
                      meta.get("frames_per_segment"), semantic=semantic)


def decode_sample(raw: dict, layout_hash: str | None = None) -> Sample:
    """A grouped tar sample -> Sample. Never unpickles (np.load allow_pickle=False)."""
    where = f"{raw.get('__url__')}: sample {raw.get('__key__')!r}"
    missing = [m for m in ("codes.npy", "txt", "json") if m not in raw]
    if missing:
        raise CorruptSampleError(f"{where}: missing {', '.join(missing)}")
    try:
        meta = json.loads(raw["json"])
        text = raw["txt"].decode("utf-8")
    except Exception as e:
        raise CorruptSampleError(f"{where}: cannot decode ({type(e).__name__}: {e})") from None
    if layout_hash is not None and meta.get("layout_hash") != layout_hash:
        raise LayoutMismatchError(  # a configuration error, not a corrupt sample: stop loudly
            f"{where} was made with vocabulary layout {meta.get('layout_hash')}, this tokenizer's is "
            f"{layout_hash}; re-shard with this tokenizer"
        )
    ac = _clip_codes(raw, 0, int(meta["n_samples"]), meta, where)
    clips = meta.get("playlist_clips") if meta.get("task") == "playlist" else None
    # a playlist's other clips: codes1.npy, codes2.npy, ... (other samples have none)
    more = [_clip_codes(raw, n, int(clip["n_samples"]), meta, where) for n, clip in enumerate((clips or [])[1:], 1)]
    return Sample(raw["__key__"], raw.get("__url__", ""), ac, text, meta, more)


def iter_shard(url: str, skip: int, on_error) -> Iterator[dict]:
    """Raw grouped samples of one shard, the first `skip` left out; errors go to `on_error`
    (which logs and counts them) and end the shard instead of the job."""
    def handler(exn: Exception) -> bool:
        on_error(f"{url}: broken shard ({type(exn).__name__}: {exn.args[0] if exn.args else exn})")
        return True  # go on with what can be read

    samples = group_by_keys(tar_file_expander(url_opener([{"url": url}], handler=handler), handler=handler),
                            handler=handler)  # fmt: skip
    for i, raw in enumerate(samples):
        if i >= skip:
            yield raw


@dataclass
class StreamConfig:
    seed: int = 0  # shuffles shard order, the buffer and resampling
    shuffle_buffer: int = 256  # samples held for shuffling (0 = no sample shuffle)
    resampled: bool = False  # draw shards with replacement (infinite; any shard count works)
    epoch_samples: int | None = None  # resampled: samples per epoch over ALL ranks and workers
    epochs: int | None = None  # stop after this many epochs (None: forever, training's default)
    split_by: str = "shard"  # "shard": each (rank, worker) reads its own shards; "sample": every
    #   one reads all shards and keeps every (world*workers)-th sample (any shard count; eval sets)


def epoch_order(seed: int, epoch: int, n_shards: int) -> np.ndarray:
    """The shard permutation of an epoch, the same on every rank and worker."""
    return np.random.default_rng([seed, epoch]).permutation(n_shards)


class ShardStream:
    """The samples one (rank, worker) reads, as an iterator with exact state."""

    def __init__(self, urls: list[str], cfg: StreamConfig, rank: int = 0, world_size: int = 1,
                 worker: int = 0, num_workers: int = 1, layout_hash: str | None = None):
        if not urls:
            raise ValueError("no shards given")
        if cfg.split_by not in ("shard", "sample"):
            raise ValueError(f"split_by must be 'shard' or 'sample', got {cfg.split_by!r}")
        if not cfg.resampled and cfg.split_by == "shard" and len(urls) < world_size * num_workers:
            raise ValueError(
                f"{len(urls)} shard(s) for {world_size} rank(s) x {num_workers} worker(s): every "
                f"worker needs at least one shard. Write more, smaller shards (`mmtok data shard "
                f"--max-samples`), use fewer workers, or set resampled=True"
            )
        if cfg.resampled and not cfg.epoch_samples:
            raise ValueError("resampled streams need epoch_samples (samples per epoch, all ranks)")
        self.urls, self.cfg, self.layout_hash = list(urls), cfg, layout_hash
        self.rank, self.world, self.worker, self.workers = rank, world_size, worker, num_workers
        self.epoch, self.shard_pos, self.sample_pos, self.epoch_read = 0, 0, 0, 0
        self.epoch_decoded = 0  # samples decoded this epoch, kept or not (split_by="sample")
        self.corrupt = 0  # samples / shards skipped as corrupt
        self.rng = np.random.default_rng([cfg.seed, rank, worker, 7919])  # shuffle buffer draws
        self.buffer: list[Sample] = []
        # Leftover of an earlier world size's epoch(s), read before `epoch` (see resplit_streams):
        # [shard index, samples of it already read], and how many of these are done.
        self.pieces: list[tuple[int, int]] = []
        self.piece_pos = 0

    # ---- which shards -----------------------------------------------------------------------------
    def epoch_shards(self, epoch: int) -> list[str]:
        """Non-resampled: this worker's shards for `epoch` (same permutation on every rank)."""
        order = epoch_order(self.cfg.seed, epoch, len(self.urls))
        if self.cfg.split_by == "sample":
            return [self.urls[i] for i in order]
        mine = order[self.rank :: self.world][self.worker :: self.workers]
        return [self.urls[i] for i in mine]

    def resampled_shard(self, epoch: int, pos: int) -> str:
        rng = np.random.default_rng([self.cfg.seed, epoch, self.rank, self.worker, pos])
        return self.urls[int(rng.integers(len(self.urls)))]

    def _per_worker_epoch(self) -> int:
        return max(1, self.cfg.epoch_samples // (self.world * self.workers))

    # ---- reading ----------------------------------------------------------------------------------
    def _on_error(self, message: str) -> None:
        self.corrupt += 1
        log.warning("skipping corrupt data: %s", message)

    def _decoded(self, url: str) -> Iterator[Sample]:
        """The samples of shard `url` from `sample_pos` on, advancing `sample_pos`; a corrupt
        sample is reported and skipped."""
        for raw in iter_shard(url, self.sample_pos, self._on_error):
            self.sample_pos += 1
            try:
                sample = decode_sample(raw, self.layout_hash)
            except CorruptSampleError as e:
                self._on_error(str(e))
                continue
            yield sample

    def _read_pieces(self) -> Iterator[Sample]:
        """The shard pieces handed over by a re-split (sample_pos: the position in the current one)."""
        while self.piece_pos < len(self.pieces):
            idx, skip = self.pieces[self.piece_pos]
            self.sample_pos = max(self.sample_pos, skip)
            yield from self._decoded(self.urls[idx])
            self.piece_pos, self.sample_pos = self.piece_pos + 1, 0
        self.pieces, self.piece_pos = [], 0

    def _read(self) -> Iterator[Sample]:
        """Decoded samples in shard order (no buffer), advancing the position state."""
        yield from self._read_pieces()
        while self.cfg.epochs is None or self.epoch < self.cfg.epochs:
            if self.cfg.resampled:
                if self.epoch_read >= self._per_worker_epoch():
                    self.epoch, self.shard_pos, self.sample_pos, self.epoch_read, self.epoch_decoded = self.epoch + 1, 0, 0, 0, 0
                    continue
                url = self.resampled_shard(self.epoch, self.shard_pos)
            else:
                shards = self.epoch_shards(self.epoch)
                if self.shard_pos >= len(shards):
                    self.epoch, self.shard_pos, self.sample_pos, self.epoch_read, self.epoch_decoded = self.epoch + 1, 0, 0, 0, 0
                    continue
                url = shards[self.shard_pos]
            for sample in self._decoded(url):
                self.epoch_decoded += 1
                slot = (self.epoch_decoded - 1) % (self.world * self.workers)
                if self.cfg.split_by == "sample" and slot != self.rank * self.workers + self.worker:
                    continue
                self.epoch_read += 1
                yield sample
                if self.cfg.resampled and self.epoch_read >= self._per_worker_epoch():
                    break
            else:
                self.shard_pos, self.sample_pos = self.shard_pos + 1, 0
                continue
            self.shard_pos, self.sample_pos = self.shard_pos + 1, 0  # resampled epoch ended mid-shard

    def __iter__(self) -> Iterator[Sample]:
        """Shuffled samples: a new sample replaces a random buffered one, which is yielded."""
        size = self.cfg.shuffle_buffer
        for sample in self._read():
            while len(self.buffer) > max(size, 0):  # a re-split handed this stream more than its size
                yield self.buffer.pop(int(self.rng.integers(len(self.buffer))))
            if size <= 0:
                yield sample
                continue
            if len(self.buffer) < size:
                self.buffer.append(sample)
                continue
            j = int(self.rng.integers(size))
            out, self.buffer[j] = self.buffer[j], sample
            yield out
        while self.buffer:  # finite stream: drain in random order
            yield self.buffer.pop(int(self.rng.integers(len(self.buffer))))

    # ---- exact resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "shard_pos": self.shard_pos, "sample_pos": self.sample_pos,
                "epoch_read": self.epoch_read, "epoch_decoded": self.epoch_decoded, "corrupt": self.corrupt, "rng": self.rng.bit_generator.state,
                "buffer": [s.to_state() for s in self.buffer], "n_urls": len(self.urls),
                "pieces": [list(p) for p in self.pieces], "piece_pos": self.piece_pos}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if state["n_urls"] != len(self.urls):
            raise ValueError(f"stream state is for {state['n_urls']} shards, this stream has {len(self.urls)}")
        self.epoch, self.shard_pos, self.sample_pos = state["epoch"], state["shard_pos"], state["sample_pos"]
        self.epoch_read, self.epoch_decoded, self.corrupt = state["epoch_read"], state["epoch_decoded"], state["corrupt"]
        self.rng.bit_generator.state = state["rng"]
        self.buffer = [Sample.from_state(s) for s in state["buffer"]]
        self.pieces = [(int(i), int(k)) for i, k in state.get("pieces", [])]
        self.piece_pos = int(state.get("piece_pos", 0))


def _epoch_owner(i: int, world: int, workers: int) -> tuple[int, int, int]:
    """Position i of an epoch's shard permutation -> (rank, worker, index in that worker's list),
    the inverse of `order[rank::world][worker::workers]`."""
    j = i // world
    return i % world, j % workers, j // workers


def resplit_streams(old: dict[tuple[int, int], dict | None], urls: list[str], cfg: StreamConfig,
                    old_world: int, old_workers: int, world: int, workers: int) -> dict[tuple[int, int], dict]:
    """Stream states of a run saved on `old_world` ranks x `old_workers` workers -> states for
    `world` x `workers`, continuing from the same global position.

    `old[(rank, worker)]` is each saved stream's state (None: it had not started). The rule
    (non-resampled, split_by="shard"): for every epoch some old stream had not finished, the
    shards of its permutation that no old stream had finished, each with the number of samples
    already read from it, are the leftover pieces. They are dealt to the new streams like shards
    (`pieces[rank::world][worker::workers]`); each new stream reads its pieces, then goes on with
    the epoch after the newest old one, split the new way. The old shuffle buffers (read but not
    yet yielded) are dealt to the new streams too. So no sample of the interrupted epochs is read
    twice and none is left out. Resampled streams draw with replacement: the new streams start
    the epoch after the newest old one (the draws of the rest of that epoch are not made);
    the buffers are dealt the same way."""
    if cfg.split_by != "shard":
        raise ValueError(f"split_by={cfg.split_by!r} streams cannot be re-split for another world size "
                         "(resume with the same number of ranks and workers)")
    fresh = {"epoch": 0, "shard_pos": 0, "sample_pos": 0, "pieces": [], "piece_pos": 0, "buffer": [], "corrupt": 0}
    streams = {(r, w): old.get((r, w)) or fresh for r in range(old_world) for w in range(old_workers)}
    first = min(s["epoch"] for s in streams.values())
    last = max(s["epoch"] for s in streams.values())
    pieces: list[tuple[int, int]] = []
    for key in sorted(streams):  # pieces an earlier re-split gave these streams, not yet read
        s = streams[key]
        for n, (idx, skip) in enumerate(s["pieces"][s["piece_pos"]:]):
            pieces.append((int(idx), max(int(skip), int(s["sample_pos"])) if n == 0 else int(skip)))
    if not cfg.resampled:
        for epoch in range(first, last + 1):
            if cfg.epochs is not None and epoch >= cfg.epochs:
                break
            for i, idx in enumerate(epoch_order(cfg.seed, epoch, len(urls))):
                r, w, k = _epoch_owner(i, old_world, old_workers)
                s = streams[(r, w)]
                in_pieces = s["piece_pos"] < len(s["pieces"])  # it has not begun its own epoch yet
                shard_pos, sample_pos = s["shard_pos"], 0 if in_pieces else s["sample_pos"]
                if s["epoch"] > epoch or (s["epoch"] == epoch and k < shard_pos):
                    continue  # read to the end
                done = sample_pos if s["epoch"] == epoch and k == shard_pos else 0
                pieces.append((int(idx), int(done)))
    buffers = [b for key in sorted(streams) for b in streams[key]["buffer"]]
    corrupt = sum(int(s["corrupt"]) for s in streams.values())
    out, n_new = {}, world * workers
    for r in range(world):
        for w in range(workers):
            stream = ShardStream(urls, cfg, r, world, w, workers)
            stream.epoch = last + 1
            stream.rng = np.random.default_rng([cfg.seed, r, w, 7919, last + 1])
            state = stream.state_dict()
            state["pieces"] = [list(p) for p in pieces[r::world][w::workers]]
            state["buffer"] = buffers[r * workers + w :: n_new]
            state["corrupt"] = corrupt if (r, w) == (0, 0) else 0
            out[(r, w)] = state
    return out
