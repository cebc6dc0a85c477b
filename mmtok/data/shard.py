"""Manifest -> WebDataset tar shards of codec codes (what training streams).

Each sample is keyed without dots (WebDataset splits key and extension at the first dot) and holds

    <key>.codes.npy   int16 (K, T) codebook indices (np.save format; read with allow_pickle=False)
    <key>.txt         the caption
    <key>.json        duration, sample_rate, codec, codebooks, n_samples, frames, layout_hash, frame_rate,
                      frames_per_segment,
                      source (the audio path) and every other manifest field
    <key>.scales.npy  float32 (S,) per-segment scales, only for codecs that have them
    <key>.semantic.npy int16 (T,) semantic cluster id of each frame, only for tokenizers with a
                      semantic stream
    <key>.flac        the source audio as FLAC, only with `include_audio`
    <key>.codes1.npy ... the second, third, ... clip of a playlist item (`audios`), with
                      `scales1.npy` / `semantic1.npy` ... as for the first; the json's `playlist_clips` lists each
                      clip's source, n_samples, duration, frames and gain (the first clip's are the
                      top-level fields, as for any item)

A segments item (`mmtok.data.tasks`) is checked against its audio's length here: a section that
ends beyond the audio is reported as a skipped input naming the item.

An item with `start_s` / `end_s` (seconds) is the clip between them inside a longer file: only
that window is read (`read_window`) and encoded, without re-encoding or reading the whole file.

Plan first, then work: items are cut into shards in manifest order by sample count and estimated
bytes, so the plan is the same on every run and a resumed job redoes exactly the unfinished shards.
A shard is written as `<name>.tar.tmp` and renamed when complete, with its record (counts, skipped
items) in `_parts/`; `shards.jsonl` (index) and `<split>-report.jsonl` (skipped inputs and why)
are rebuilt from the records at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from mmtok.data.manifest import read_manifest, write_jsonl
from mmtok.data.tasks import check_segments, item_name, task_of
from mmtok.tokenizer.audio_io import AudioSource
from mmtok.tokenizer.multimodal import MultimodalTokenizer

INDEX, PARTS = "shards.jsonl", "_parts"


@dataclass
class ShardConfig:
    max_samples: int = 1000  # samples per shard at most
    max_bytes: int = 256 << 20  # estimated bytes per shard at most (codes + FLAC when included)
    include_audio: bool = False  # also store the source audio as FLAC (`<key>.flac`)
    min_seconds: float = 0.5  # shorter audio is skipped as "too short"
    workers: int = 1  # encoding processes; each loads the tokenizer once


def sample_key(index: int, item: dict) -> str:
    """Unique, dot-free key: manifest line index + a readable id."""
    name = str(item.get("id") or Path(item["audio"]).stem)
    return f"{index:08d}_" + re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:80]


def clip_window(item: dict) -> tuple[float, float | None] | None:
    """(start_s, end_s or None for the end of the file) of an item cut from a longer file, or None;
    ValueError when the fields are not a window."""
    if "start_s" not in item and "end_s" not in item:
        return None
    start, end = item.get("start_s", 0), item.get("end_s")
    for name, v in (("start_s", start), ("end_s", end)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ValueError(f"{name} must be a number of seconds, got {v!r}")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"start_s {start} and end_s {end} are not a window")
    return float(start), None if end is None else float(end)


def window_frames(window: tuple[float, float | None], sample_rate: int, n_frames: int) -> tuple[int, int]:
    """Sample range [a, b) of a window in a file of n_frames samples (the end clipped to the file)."""
    a = round(window[0] * sample_rate)
    b = n_frames if window[1] is None else min(n_frames, round(window[1] * sample_rate))
    return a, b


def read_window(path: str, window: tuple[float, float | None]) -> tuple[np.ndarray, int]:
    """Only the window's samples of a file, as float32 (channels, n), and the file's rate."""
    with AudioSource(path) as src:
        a, b = window_frames(window, src.sample_rate, src.n_frames)
        if a >= b:
            raise ValueError(f"clip window {window[0]}-{window[1]} s is outside the file "
                             f"({src.n_frames / src.sample_rate:.3f} s)")  # fmt: skip
        return src.read(a, b), src.sample_rate


def plan_shards(items: list[dict], frame_rate: float, n_codebooks: int, cfg: ShardConfig) -> list[list[int]]:
    """Item indices of each shard, cut by cfg.max_samples and estimated bytes."""
    shards, cur, cur_bytes = [], [], 0
    for i, item in enumerate(items):
        try:
            info = sf.info(item["audio"])
            window = clip_window(item)
            seconds = info.duration if window is None else max(0, (min(info.duration, window[1] or math.inf)
                                                                   - window[0]))  # fmt: skip
            for extra in item.get("audios", [])[1:]:  # a playlist's other clips
                seconds += sf.info(extra).duration
            est = math.ceil(seconds * frame_rate) * n_codebooks * 2 + 2048  # codes + headers
            if cfg.include_audio:
                est += os.path.getsize(item["audio"])
        except Exception:  # unreadable: the worker records why; it costs nothing in the shard
            est = 0
        if cur and (len(cur) >= cfg.max_samples or cur_bytes + est > cfg.max_bytes):
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(i)
        cur_bytes += est
    if cur:
        shards.append(cur)
    return shards


def _plan_hash(items: list[dict], indices: list[int]) -> str:
    blob = json.dumps([[i, items[i]["audio"], items[i]["text"]]
                       + ([items[i].get("start_s"), items[i].get("end_s")]
                          if "start_s" in items[i] or "end_s" in items[i] else [])
                       + ([items[i]["audios"]] if "audios" in items[i] else [])
                       for i in indices]).encode()  # fmt: skip
    return hashlib.sha256(blob).hexdigest()[:16]


# ---- one sample ---------------------------------------------------------------------------------
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed mtime: shards are reproducible
    tar.addfile(info, io.BytesIO(data))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def check_audio(path: str, min_seconds: float, window: tuple[float, float | None] | None = None) -> None:
    """Raise ValueError naming the file if it cannot be a training sample (cheap header checks;
    decoding problems and NaN are found by the tokenizer while encoding). With a window, the
    checks are about the clip inside the file."""
    try:
        info = sf.info(path)
    except Exception as e:
        raise ValueError(f"unreadable audio ({type(e).__name__}: {e})") from None
    if info.frames == 0:
        raise ValueError("empty audio (0 samples)")
    duration = info.duration
    if window is not None:
        a, b = window_frames(window, info.samplerate, info.frames)
        if a >= info.frames:
            raise ValueError(f"clip window starts at {window[0]} s, after the end of the file ({info.duration:.3f} s)")
        duration = (b - a) / info.samplerate
    if duration < min_seconds:
        raise ValueError(f"too short ({duration:.3f} s < {min_seconds} s)")


def encode_checked(tok, path: str, cfg: ShardConfig, window=None):
    """The codes of one audio file (or of `window` inside it); raises ValueError on unusable audio."""
    if not os.path.exists(path):
        raise ValueError("audio file not found")
    check_audio(path, cfg.min_seconds, window)
    if window is None:
        codes = tok.encode_audio(path)
    else:  # only the clip's samples are read
        wav, sr = read_window(path, window)
        codes = tok.encode_audio(wav, sr)
    if codes.n_frames == 0:
        raise ValueError("audio encodes to 0 frames")
    if codes.codes.max() > np.iinfo(np.int16).max:  # codes.npy is int16 (EnCodec: 1024 codes)
        raise ValueError(f"code {codes.codes.max()} does not fit the shards' int16 codes")
    return codes


def encode_sample(tok, key: str, item: dict, cfg: ShardConfig) -> dict[str, bytes]:
    """One manifest item -> the tar members of its sample (raises on bad audio)."""
    path = item["audio"]
    window = clip_window(item)
    codes = encode_checked(tok, path, cfg, window)
    if task_of(item) == "segments":
        check_segments(item["segments"], item_name(item), duration=codes.duration)
    others = []  # a playlist's other clips, whole
    for other in item["audios"][1:] if task_of(item) == "playlist" else []:
        try:
            others.append((other, encode_checked(tok, other, cfg)))
        except ValueError as e:
            raise ValueError(f"playlist clip {other}: {e}") from None
    extra = {k: v for k, v in item.items() if k not in ("audio", "text")}
    meta = {
        **extra,
        "source": path,
        "duration": round(codes.duration, 6),
        "sample_rate": codes.sample_rate,
        "n_samples": codes.n_samples,
        "codec": codes.codec,
        "codebooks": codes.n_codebooks,
        "frames": codes.n_frames,
        "frame_rate": tok.frame_rate,
        "frames_per_segment": codes.frames_per_segment,  # with scales.npy (encodec_48khz), else None
        "gain_db": round(codes.gain_db, 4),  # the tokenizer's loudness rule's gain for this item
        "layout_hash": tok.layout.hash,
    }
    if others:  # the first clip's facts are the top-level ones, as for any item
        meta["playlist_clips"] = [{"source": p, "n_samples": c.n_samples, "duration": round(c.duration, 6),
                                   "frames": c.n_frames, "gain_db": round(c.gain_db, 4)}
                                  for p, c in [(path, codes), *others]]  # fmt: skip
    members = {
        f"{key}.codes.npy": _npy(codes.codes.astype(np.int16)),
        f"{key}.txt": item["text"].encode(),
        f"{key}.json": json.dumps(meta, ensure_ascii=False).encode(),
    }
    for n, c in enumerate([codes] + [c for _, c in others]):
        suffix = str(n or "")  # codes.npy, codes1.npy, ...
        if n:
            members[f"{key}.codes{suffix}.npy"] = _npy(c.codes.astype(np.int16))
        if c.scales is not None:
            members[f"{key}.scales{suffix}.npy"] = _npy(c.scales.astype(np.float32))
        if c.semantic is not None:
            members[f"{key}.semantic{suffix}.npy"] = _npy(c.semantic.astype(np.int16))
    if cfg.include_audio:
        if path.lower().endswith(".flac") and window is None:
            members[f"{key}.flac"] = Path(path).read_bytes()
        else:
            if window is None:
                wav, sr = sf.read(path, dtype="float32", always_2d=True)
            else:
                wav, sr = read_window(path, window)
                wav = wav.T  # the clip, (n, channels)
            buf = io.BytesIO()
            sf.write(buf, wav, sr, format="FLAC", subtype="PCM_16")
            members[f"{key}.flac"] = buf.getvalue()
    return members


# ---- one shard (runs in a worker) ---------------------------------------------------------------
_TOKENIZER = None  # per worker process: loaded once by _init_worker


def _load_tokenizer(tokenizer_dir: str) -> None:
    global _TOKENIZER
    _TOKENIZER = MultimodalTokenizer.from_pretrained(tokenizer_dir)


def _init_worker(tokenizer_dir: str) -> None:
    """Pool workers only: in the calling process a thread cap would outlive the sharding (the
    demo then trained on 1 of 2 cores)."""
    torch.set_num_threads(1)  # one process per core; intra-op threads would fight
    _load_tokenizer(tokenizer_dir)


def write_shard(job) -> dict:
    """Encode a shard's items into `<name>.tar` (aside, then renamed); returns its record."""
    out, name, numbered, cfg, plan_hash, manifest = job  # numbered: [(manifest index, item)]
    tmp = out / f"{name}.tmp"
    samples, skipped = 0, []
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, item in numbered:
            try:
                members = encode_sample(_TOKENIZER, sample_key(i, item), item, cfg)
            except Exception as e:  # one bad file never ends the job; it goes to the report
                skipped.append({"manifest": manifest, "line": i + 1, "audio": item["audio"],
                                "reason": f"{type(e).__name__}: {e}"})  # fmt: skip
                continue
            for member, data in members.items():
                _add(tar, member, data)
            samples += 1
    record = {"url": name, "samples": samples, "bytes": tmp.stat().st_size, "skipped": skipped,
              "plan": plan_hash}  # fmt: skip
    part = out / PARTS / f"{name}.json"
    part.with_suffix(".tmp").write_text(json.dumps(record))
    os.replace(part.with_suffix(".tmp"), part)  # record first: a tar under its name is complete
    os.replace(tmp, out / name)
    return record


def shard_manifest(manifest, tokenizer_dir, out, split: str | None = None,
                   cfg: ShardConfig | None = None, progress: bool = True) -> dict:
    """Shard a manifest; returns {"shards", "samples", "skipped", "reused"}. Resumable."""

    cfg = cfg or ShardConfig()
    manifest, out = Path(manifest), Path(out)
    split = split or manifest.name.split(".")[0]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise ValueError(f"split name {split!r} must be letters, digits, '_' or '-'")
    items = read_manifest(manifest)
    if not items:
        raise ValueError(f"manifest {manifest} has no items")
    tok = MultimodalTokenizer.from_pretrained(tokenizer_dir)
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    plan = plan_shards(items, tok.frame_rate, tok.config.n_codebooks, cfg)
    names = [f"{split}-{s:06d}.tar" for s in range(len(plan))]
    records, jobs = {}, []
    for name, indices in zip(names, plan):
        h = _plan_hash(items, indices)
        part = out / PARTS / f"{name}.json"
        if (out / name).exists() and part.exists() and json.loads(part.read_text()).get("plan") == h:
            records[name] = json.loads(part.read_text())  # finished by an earlier run: keep
        else:
            jobs.append((out, name, [(i, items[i]) for i in indices], cfg, h, str(manifest)))
    reused = len(records)
    total = sum(len(p) for p, n in zip(plan, names) if n not in records)
    with tqdm(total=total, desc=f"shard {split}", unit="sample", disable=not progress) as bar:
        if cfg.workers <= 1 or len(jobs) <= 1:
            _load_tokenizer(str(tokenizer_dir))
            results = map(write_shard, jobs)
            pool = None
        else:
            # fork: workers start in ~0.1 s instead of re-importing torch (~5 s each with spawn);
            # the parent has not started the codec (it loads lazily), so there are no threads to copy.
            pool = mp.get_context("fork").Pool(min(cfg.workers, len(jobs)), _init_worker, (str(tokenizer_dir),))
            results = pool.imap_unordered(write_shard, jobs)
        for rec in results:
            records[rec["url"]] = rec
            bar.update(rec["samples"] + len(rec["skipped"]))
        if pool is not None:
            pool.close()
            pool.join()
    for stale in out.glob(f"{split}-*.tar"):  # shards of an older, longer plan
        if stale.name not in records:
            stale.unlink()
    ordered = [records[n] for n in names]
    index = [r for r in _read_index(out) if r.get("split") != split]
    index += [{"url": r["url"], "split": split, "samples": r["samples"], "bytes": r["bytes"],
               "skipped": len(r["skipped"])} for r in ordered]  # fmt: skip
    write_jsonl(out / INDEX, index)
    report = [s for r in ordered for s in r["skipped"]]
    write_jsonl(out / f"{split}-report.jsonl", report)
    return {"split": split, "shards": len(ordered), "samples": sum(r["samples"] for r in ordered),
            "skipped": len(report), "reused": reused, "index": str(out / INDEX)}  # fmt: skip


def _read_index(out: Path) -> list[dict]:
    path = out / INDEX
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
