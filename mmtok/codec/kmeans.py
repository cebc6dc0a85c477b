"""Codebook initialisation by residual k-means on encoder frames (cdist/argmin Lloyd steps:
seconds on CPU, where encodec's own k-means takes minutes), and stand-in EnCodec weights for
offline tests and benchmarks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from mmtok.codec.audio import load_training_audio
from mmtok.tokenizer.codec import PRETRAINED, quiet_weight_norm


@torch.no_grad()
def kmeans_codebooks(layers, x: torch.Tensor, iters: int = 15, seed: int = 0, frames_per_step: float = 1.0,
                     from_current: bool = False, frames_per_cluster: int | None = None) -> None:
    """Residual k-means of frames x (N, D) into encodec VectorQuantization `layers`: codebook q
    clusters what codebooks < q left over (cdist/argmin Lloyd steps: seconds on CPU, where
    encodec's own k-means takes minutes). `from_current` starts from the layers' codebooks;
    empty clusters are re-seeded on random frames (dead-code replacement).

    `frames_per_cluster` (stand-in weights from little audio): each codebook uses at most
    N // frames_per_cluster entries, so every cluster holds several frames and leaves a real
    residual for the next codebook (with one frame per cluster the residual is exactly 0 and
    every later codebook would quantize float noise); its other entries are put far outside the
    data, where no frame is ever nearest to them."""
    gen = torch.Generator().manual_seed(seed)
    for layer in layers:
        cb = layer._codebook
        size = cb.codebook_size
        k = size if frames_per_cluster is None else max(2, min(size, x.shape[0] // frames_per_cluster))
        seeds = torch.randint(0, x.shape[0], (k,), generator=gen)
        jitter = 1e-4 * x.std() * torch.randn(k, x.shape[1], generator=gen)  # break ties
        means = cb.embed[:k].clone() if from_current else x[seeds] + jitter
        for _ in range(iters):
            assign = torch.cdist(x, means).argmin(dim=1)  # (N,)
            counts = torch.bincount(assign, minlength=k).float()
            sums = torch.zeros_like(means).index_add_(0, assign, x)
            means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], x[seeds] + jitter)
        assign = torch.cdist(x, means).argmin(dim=1)
        # EMA state consistent with the means (embed = embed_avg / cluster_size), in per-step
        # units: counts scaled to one training batch's frames, so EMA updates start in balance.
        counts = torch.bincount(assign, minlength=k).float() * frames_per_step / x.shape[0]
        if k < size:  # unused entries: far away (1000 standard deviations), never the nearest
            far = 1e3 * x.std() * torch.nn.functional.normalize(torch.randn(size - k, x.shape[1], generator=gen), dim=1)
            means, counts = torch.cat([means, far]), torch.cat([counts, counts.new_zeros(size - k)])
        cb.embed.copy_(means)
        cb.embed_avg.copy_(means * counts[:, None])
        cb.cluster_size.copy_(counts)
        cb.inited.fill_(1)
        x = x - means[assign]  # residual for the next codebook


@torch.no_grad()
def fit_codebooks(model, audio: list[torch.Tensor], iters: int, max_frames: int, seed: int,
                  frames_per_step: float, from_current: bool = False) -> None:
    """k-means the codebooks on encoder frames of the training audio.

    Run before training and again after it (`from_current`): EMA codebooks lag behind an
    encoder that moves fast early in training, and this final pass guarantees every codebook is
    in use on the training audio whatever the time budget was.
    """
    model.eval()
    x = torch.cat([model.encoder(w[None, None])[0].T for w in audio])  # (N, D) encoder frames
    if x.shape[0] > max_frames:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_frames]]
    kmeans_codebooks(model.quantizer.vq.layers, x, iters, seed, frames_per_step, from_current)


def kmeans_encodec_repository(out, audio_files, n_q: int | None = None, seconds: float = 20.0,
                              names=("encodec_24khz", "encodec_48khz"), frames_per_cluster: int = 32) -> Path:
    """An offline stand-in for encodec's pretrained weights (tests, benchmarks): the real
    architectures with `pretrained=False` (random encoders) and their first `n_q` codebooks
    (None: all of them, 32 for 24 kHz and 16 for 48 kHz, so every bandwidth works)
    k-means-initialised on `seconds` of real audio, at most one entry per `frames_per_cluster`
    frames per codebook (see `kmeans_codebooks`), saved as `encodec_<rate>-<sha256[:8]>.th`
    (the name scheme encodec's `_get_pretrained` verifies) for `load_codec(..., repository=out)`.
    Speed and the code/decode paths are real; the codes only exercise the pipeline."""
    from encodec import EncodecModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        with quiet_weight_norm():
            model = getattr(EncodecModel, PRETRAINED[name][0])(pretrained=False)
        mono = torch.cat(load_training_audio(audio_files, model.sample_rate, seconds))
        x = mono[None].repeat(model.channels, 1)  # (C, n)
        with torch.no_grad():
            if model.segment_length:  # 48 kHz: encodec normalises each 1 s segment by its RMS
                segs = x.split(model.segment_length, dim=1)
                frames = [model.encoder((s / (s.mean(0).pow(2).mean().sqrt() + 1e-8))[None])[0].T for s in segs]
            else:
                frames = [model.encoder(x[None])[0].T]
        layers = model.quantizer.vq.layers
        kmeans_codebooks(layers[: len(layers) if n_q is None else n_q], torch.cat(frames), iters=10,
                         frames_per_cluster=frames_per_cluster)
        tmp = out / f"{name}.tmp"
        torch.save(model.state_dict(), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        os.replace(tmp, out / f"{name}-{digest}.th")
    return out
