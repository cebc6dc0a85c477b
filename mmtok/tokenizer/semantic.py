"""Semantic audio tokens: one k-means cluster id per frame of pitch / rhythm / timbre features.

AudioLM, MusicLM and SpeechTokenizer pair codec tokens with *semantic* tokens: the cluster ids
of frame features (HuBERT's first iteration clusters MFCCs; MERT's teacher is a CQT, because
pitch matters for music). A small CPU-fitted codec keeps timbre but loses pitch; this stream
keeps what the codec drops, at the codec's frame rate, so the two can sit side by side.

    features  a `FrameFeatures`: (C, n) audio at any rate -> (T, D) frames at its `frame_rate`.
              `SpectralFeatures` (torch only) computes any of
                chroma    12 pitch classes: STFT magnitude in semitone bands (C2..B7), folded
                          to one octave, unit length per frame (level-invariant)
                logfreq   the 72 semitone bands themselves, log, per-frame mean removed: a
                          CQT-like log-frequency spectrum (pitch height and timbre)
                flux      onset strength: half-wave-rectified log-mel differences (10 ms hop),
                          summed over 3 bands, max-pooled into each frame (the beat)
                mfcc      MFCC 1..12 of a 40-band log-mel, mean-pooled (timbre; no c0 = level)
              `HFLayerFeatures` takes one hidden layer of a `transformers` audio model
              (HuBERT, MERT, wav2vec 2.0) instead.
    fit       features of the training audio -> per-dimension standardisation -> each feature
              part scaled to equal weight -> k-means (k-means++ seeding, cdist/argmin Lloyd
              iterations, seeded: the same audio gives the same centres)
    encode    audio -> (T,) int64 ids, T = ceil(n_samples * frame_rate / sample_rate): the
              frame count of a codec at that frame rate (fitted demo codec 25 Hz,
              encodec_24khz 75 Hz), so id t and codec frame t cover the same audio
    save/load `semantic.safetensors` (centres, mean, scale) + `semantic.json` (feature settings,
              cluster count, seed, what the fit saw)

`id_rhythm_features` turns an id sequence into a tempo-sensitive vector (autocorrelation of id
changes and id recurrence over lags of 40-200 BPM): a readout for probes, not a token.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.tokenizer.audio_io import AudioSource, CodecInput, channels_first_view

FORMAT = "mmtok-semantic"
CONFIG_FILE = "semantic.json"
WEIGHTS_FILE = "semantic.safetensors"
SPECTRAL_PARTS = ("chroma", "logfreq", "flux", "mfcc")
C2_HZ = 65.406


@runtime_checkable
class FrameFeatures(Protocol):
    """Audio -> frame features. `__call__(wav (C, n), sample_rate) -> (T, D)` float32 frames at
    `frame_rate` Hz (any T: the tokenizer pools them to its own frame count). `groups` lists the
    feature parts' widths (they sum to D; each part gets equal weight in the k-means distance).
    `config()` is a JSON dict with a "kind" that `features_from_config` rebuilds it from."""

    frame_rate: float
    groups: tuple[int, ...]

    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor: ...

    def config(self) -> dict: ...


def mono_at(wav, sample_rate: int, target_rate: int) -> torch.Tensor:
    """(n,) / (C, n) / (n, C) audio, or a file path -> mono float32 (n',) at `target_rate`, by
    the codec input's rules (channel mean, windowed torchaudio resample)."""
    with AudioSource(wav, None if isinstance(wav, (str, Path)) else sample_rate) as src:
        inp = CodecInput(src, target_rate, 1)
        return inp.read(0, inp.n_samples)[0]


def pool_frames(x: torch.Tensor, n_out: int, mode: str = "avg") -> torch.Tensor:
    """(T, D) -> (n_out, D): adaptive average (or max) pooling down, nearest-neighbour up."""
    if x.shape[0] == n_out:
        return x
    if x.shape[0] < n_out:
        idx = torch.clamp((torch.arange(n_out) * x.shape[0]) // n_out, max=x.shape[0] - 1)
        return x[idx]
    pool = F.adaptive_max_pool1d if mode == "max" else F.adaptive_avg_pool1d
    return pool(x.T[None], n_out)[0].T


def _semitone_filterbank(n_fft: int, sample_rate: int, fmin: float, n_bands: int) -> torch.Tensor:
    """(n_fft//2+1, n_bands) triangular weights, one semitone either side of each band centre."""
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    semis = 12 * torch.log2(freqs.clamp(min=1e-3) / fmin)  # bin position in semitones above fmin
    fb = (1 - (semis[:, None] - torch.arange(n_bands)[None]).abs()).clamp(min=0)
    fb[freqs < fmin / 2 ** (1 / 12)] = 0
    return fb


class SpectralFeatures:
    """Chroma / log-frequency / onset-flux / MFCC frames from torch STFTs (see the module docstring)."""

    kind = "spectral"

    def __init__(self, parts=("chroma", "flux"), frame_rate: float = 25.0, sample_rate: int = 16000,
                 n_fft: int = 4096, hop: int = 160, fmin: float = C2_HZ, n_semitones: int = 72,
                 n_mels: int = 40, onset_fft: int = 1024):
        """`hop`: the onset STFT's hop in samples (10 ms at 16 kHz); the pitch STFT (`n_fft`) hops
        twice as far. Every part is then pooled to `frame_rate`."""
        parts = tuple(parts)
        unknown = [p for p in parts if p not in SPECTRAL_PARTS]
        if not parts or unknown:
            raise ValueError(f"spectral feature parts {list(parts)}: choose from {', '.join(SPECTRAL_PARTS)}")
        self.parts, self.frame_rate, self.sample_rate = parts, float(frame_rate), int(sample_rate)
        self.n_fft, self.hop, self.fmin, self.n_semitones = n_fft, hop, fmin, n_semitones
        self.n_mels, self.onset_fft = n_mels, onset_fft
        widths = {"chroma": 12, "logfreq": n_semitones, "flux": 3, "mfcc": 12}
        self.groups = tuple(widths[p] for p in parts)
        self._fb = _semitone_filterbank(n_fft, sample_rate, fmin, n_semitones)
        self._mel = None

    def config(self) -> dict:
        return {"kind": self.kind, "parts": list(self.parts), "frame_rate": self.frame_rate,
                "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop": self.hop, "fmin": self.fmin,
                "n_semitones": self.n_semitones, "n_mels": self.n_mels, "onset_fft": self.onset_fft}

    def _logmel(self, x: torch.Tensor) -> torch.Tensor:
        """(frames, n_mels) log-mel at the 10 ms hop."""
        if self._mel is None:
            import torchaudio.functional as AF

            self._mel = AF.melscale_fbanks(self.onset_fft // 2 + 1, 30.0, self.sample_rate / 2, self.n_mels,
                                           self.sample_rate, norm="slaney", mel_scale="slaney")
            self._dct = AF.create_dct(13, self.n_mels, norm="ortho")  # (n_mels, 13)
        spec = torch.stft(x, self.onset_fft, self.hop, window=torch.hann_window(self.onset_fft),
                          return_complex=True).abs().pow(2).T  # (frames, bins)
        return (spec @ self._mel + 1e-8).log()

    @torch.no_grad()
    def __call__(self, wav, sample_rate: int) -> torch.Tensor:
        x = mono_at(wav, sample_rate, self.sample_rate)
        n_out = math.ceil(x.numel() * self.frame_rate / self.sample_rate)
        out = []
        if "chroma" in self.parts or "logfreq" in self.parts:
            mag = torch.stft(x, self.n_fft, 2 * self.hop, window=torch.hann_window(self.n_fft),
                             return_complex=True).abs().T  # (frames, bins)
            bands = mag @ self._fb  # (frames, n_semitones)
        if "logfreq" in self.parts or "mfcc" in self.parts or "flux" in self.parts:
            logmel = self._logmel(x)
        for part in self.parts:
            if part == "chroma":
                chroma = torch.zeros(bands.shape[0], 12).index_add_(
                    1, torch.arange(self.n_semitones) % 12, bands)  # fmin = C: column 0 is C
                chroma = chroma / (chroma.norm(dim=1, keepdim=True) + 1e-6)
                out.append(pool_frames(chroma, n_out))
            elif part == "logfreq":
                lf = (bands + 1e-5).log()
                out.append(pool_frames(lf - lf.mean(1, keepdim=True), n_out))
            elif part == "flux":
                rise = (logmel[1:] - logmel[:-1]).clamp(min=0)
                rise = torch.cat([rise[:1] * 0, rise])
                thirds = torch.stack([c.sum(1) for c in rise.chunk(3, dim=1)], 1)  # low / mid / high
                out.append(pool_frames(thirds, n_out, "max"))
            elif part == "mfcc":
                out.append(pool_frames((logmel @ self._dct)[:, 1:], n_out))
        return torch.cat(out, 1).float()


class HFLayerFeatures:
    """One hidden layer of a `transformers` audio encoder (HuBERT, wav2vec 2.0, MERT) as frames.

    `model` is a loaded model (any whose forward takes `input_values` and returns
    `hidden_states` with `output_hidden_states=True`); `name` is what `config()` records, so
    `load()` can rebuild it with `from_pretrained(name)` (pass `features=` to `load` for a model
    that has no name, such as a randomly initialised one)."""

    kind = "hf_layer"

    def __init__(self, model, layer: int, sample_rate: int = 16000, name: str | None = None,
                 normalize: bool = True):
        self.model, self.layer, self.sample_rate, self.name = model.eval(), int(layer), int(sample_rate), name
        self.normalize = normalize  # zero mean, unit variance per clip (Wav2Vec2FeatureExtractor's do_normalize)
        strides = getattr(model.config, "conv_stride", None)
        self.frame_rate = float(sample_rate / math.prod(strides)) if strides else 50.0
        self.groups = (int(model.config.hidden_size),)

    @classmethod
    def from_pretrained(cls, name: str, layer: int, sample_rate: int = 16000, **kw) -> HFLayerFeatures:
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(name, trust_remote_code=kw.pop("trust_remote_code", False)), layer,
                   sample_rate, name=name, **kw)

    def config(self) -> dict:
        return {"kind": self.kind, "model": self.name, "layer": self.layer, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "normalize": self.normalize}

    @torch.no_grad()
    def __call__(self, wav, sample_rate: int) -> torch.Tensor:
        x = mono_at(wav, sample_rate, self.sample_rate)
        if self.normalize:
            x = (x - x.mean()) / (x.std() + 1e-7)
        hidden = self.model(input_values=x[None], output_hidden_states=True).hidden_states
        return hidden[self.layer][0].float()  # (T, hidden)


def features_from_config(cfg: dict) -> FrameFeatures:
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == SpectralFeatures.kind:
        return SpectralFeatures(**cfg)
    if kind == HFLayerFeatures.kind:
        if not cfg.get("model"):
            raise ValueError("these semantic tokens came from an unnamed transformers model: pass features= to load()")
        return HFLayerFeatures.from_pretrained(cfg["model"], cfg["layer"], cfg["sample_rate"],
                                               normalize=cfg.get("normalize", True))
    raise ValueError(f"unknown semantic feature kind {kind!r}")


# ---- k-means ------------------------------------------------------------------------------------
def assign(x: torch.Tensor, centres: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Nearest centre of each row of x (N, D) -> (N,) int64, in chunks (bounded memory)."""
    return torch.cat([torch.cdist(c, centres).argmin(1) for c in x.split(chunk)]) if len(x) else \
        torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0, chunk: int = 8192) -> torch.Tensor:
    """k centres (k, D) of x (N, D): k-means++ seeding, then Lloyd iterations (cdist/argmin);
    an emptied cluster is re-seeded on the frame farthest from its centre. Deterministic in `seed`."""
    x = x.float()
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means with {k} clusters needs at least {k} frames, got {n}")
    gen = torch.Generator().manual_seed(seed)
    centres = torch.empty(k, x.shape[1])
    centres[0] = x[torch.randint(0, n, (1,), generator=gen)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):  # k-means++: the next centre drawn with probability ~ squared distance
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        centres[i] = x[torch.multinomial(p, 1, generator=gen)]
        d2 = torch.minimum(d2, ((x - centres[i]) ** 2).sum(1))
    for _ in range(iters):
        ids = assign(x, centres, chunk)
        counts = torch.bincount(ids, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, ids, x)
        new = sums / counts.clamp(min=1)[:, None]
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = ((x - new[ids]) ** 2).sum(1).topk(len(empty)).indices
            new[empty] = x[far]
        if torch.equal(new, centres):
            break
        centres = new
    return centres


# ---- the tokenizer ------------------------------------------------------------------------------
class SemanticTokenizer:
    """Audio -> one cluster id per frame. `fit` on training audio, then `encode`; `save`/`load`."""

    def __init__(self, features: FrameFeatures | None = None, n_clusters: int = 256,
                 frame_rate: float | None = None, seed: int = 0, iters: int = 20, max_frames: int = 100_000):
        self.features = features if features is not None else SpectralFeatures()
        if not isinstance(self.features, FrameFeatures):
            raise TypeError(f"{type(self.features).__name__} is not a FrameFeatures "
                            "(needs frame_rate, groups, __call__(wav, sample_rate), config())")
        self.n_clusters, self.seed, self.iters, self.max_frames = int(n_clusters), int(seed), int(iters), max_frames
        self.frame_rate = float(frame_rate or self.features.frame_rate)  # the ids' rate: the codec's
        self.centres: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.fit_info: dict = {}

    def n_frames(self, n_samples: int, sample_rate: int) -> int:
        return math.ceil(n_samples * self.frame_rate / sample_rate)

    def frames(self, wav, sample_rate: int | None = None, n_frames: int | None = None) -> torch.Tensor:
        """Raw features of one input (waveform + rate, or a file path) at the ids' frame count, or
        pooled to `n_frames` (a codec's frame count for the same audio, so id t sits on frame t)."""
        if isinstance(wav, (str, Path)):
            with AudioSource(wav) as src:
                sample_rate, n = src.sample_rate, src.n_frames
        else:
            if sample_rate is None:
                raise ValueError("a waveform needs its sample_rate")
            wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
            wav = torch.from_numpy(np.ascontiguousarray(channels_first_view(wav), dtype=np.float32))  # (C, n)
            n = wav.shape[1]
        return pool_frames(self.features(wav, sample_rate), n_frames or self.n_frames(n, sample_rate))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale

    def fit_frames(self, frames: list[torch.Tensor]) -> SemanticTokenizer:
        """Fit on precomputed `frames(...)` outputs (one (T, D) tensor per clip)."""
        x = torch.cat(frames)
        groups = list(self.features.groups)
        if sum(groups) != x.shape[1]:
            raise ValueError(f"features are {x.shape[1]}-dimensional, their groups sum to {sum(groups)}")
        self.mean = x.mean(0)
        std = x.std(0).clamp(min=1e-5)
        weight = torch.cat([torch.full((g,), g ** -0.5) for g in groups])  # each part: equal total variance
        self.scale = weight / std
        total = x.shape[0]
        if total > self.max_frames:
            x = x[torch.randperm(total, generator=torch.Generator().manual_seed(self.seed))[: self.max_frames]]
        xn = self._normalise(x)
        self.centres = kmeans(xn, self.n_clusters, self.iters, self.seed)
        ids = assign(xn, self.centres)
        inertia = float(((xn - self.centres[ids]) ** 2).sum(1).mean())
        self.fit_info = {"clips": len(frames), "frames": total, "kmeans_frames": int(x.shape[0]),
                         "used_clusters": int(torch.unique(ids).numel()), "inertia": round(inertia, 5)}
        return self

    def fit(self, audio_list, sample_rate: int | None = None) -> SemanticTokenizer:
        """Fit on training audio: file paths, (wav, sample_rate) pairs, or waveforms at `sample_rate`."""
        frames = []
        for item in audio_list:
            wav, sr = item if isinstance(item, tuple) else (item, sample_rate)
            frames.append(self.frames(wav, sr))
        return self.fit_frames(frames)

    def ids_of_frames(self, frames: torch.Tensor) -> torch.Tensor:
        if self.centres is None:
            raise RuntimeError("this SemanticTokenizer is not fitted: call fit() or load()")
        return assign(self._normalise(frames.float()), self.centres)

    def encode(self, wav, sample_rate: int | None = None, n_frames: int | None = None) -> torch.Tensor:
        """(T,) int64 cluster ids, T = `n_frames` or ceil(n_samples * frame_rate / sample_rate)."""
        return self.ids_of_frames(self.frames(wav, sample_rate, n_frames))

    # ---- files ----------------------------------------------------------------------------------
    def config(self) -> dict:
        return {"format": FORMAT, "version": 1, "n_clusters": self.n_clusters, "frame_rate": self.frame_rate,
                "seed": self.seed, "iters": self.iters, "max_frames": self.max_frames,
                "features": self.features.config(), "weights": WEIGHTS_FILE, "fit": self.fit_info}

    def save(self, out) -> Path:
        if self.centres is None:
            raise RuntimeError("nothing to save: the SemanticTokenizer is not fitted")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file({"centres": self.centres.contiguous(), "mean": self.mean.contiguous(),
                       "scale": self.scale.contiguous()}, str(tmp))
        write_text_atomic(out / CONFIG_FILE, json.dumps(self.config(), indent=2))
        return out

    @classmethod
    def load(cls, path, features: FrameFeatures | None = None) -> SemanticTokenizer:
        """A saved tokenizer; `features` replaces the extractor rebuilt from the JSON settings."""
        path = Path(path)
        cfg = json.loads((path / CONFIG_FILE).read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{path / CONFIG_FILE}: not a semantic tokenizer ({cfg.get('format')!r})")
        tok = cls(features if features is not None else features_from_config(cfg["features"]),
                  cfg["n_clusters"], cfg["frame_rate"], cfg["seed"], cfg["iters"], cfg["max_frames"])
        tensors = load_file(str(path / cfg.get("weights", WEIGHTS_FILE)))
        tok.centres, tok.mean, tok.scale = tensors["centres"], tensors["mean"], tensors["scale"]
        if tok.centres.shape[0] != tok.n_clusters:
            raise ValueError(f"{path}: {tok.centres.shape[0]} centres, config says {tok.n_clusters}")
        tok.fit_info = cfg.get("fit", {})
        return tok


def fit_spectral(audio_list, n_clusters: int = 256, parts=("chroma", "flux"), frame_rate: float = 25.0,
                 seed: int = 0) -> SemanticTokenizer:
    """A `SpectralFeatures` semantic tokenizer fitted on `audio_list` (file paths or (wav, sr)
    pairs) at `frame_rate` (give the codec's, so the fit sees frames like those it will label).
    chroma+flux is the default because it is what the probe measured best for mode and tempo
    (docs/tokenizer.md#semantic-tokens)."""
    return SemanticTokenizer(SpectralFeatures(parts, frame_rate=frame_rate), n_clusters, seed=seed).fit(audio_list)


# ---- readouts -----------------------------------------------------------------------------------
def id_histogram(ids, n_clusters: int) -> np.ndarray:
    ids = np.asarray(ids)
    return (np.bincount(ids, minlength=n_clusters)[:n_clusters] / max(1, len(ids))).astype(np.float32)


def id_rhythm_features(ids, frame_rate: float, bpm: tuple[float, float] = (40.0, 200.0)) -> np.ndarray:
    """Tempo-sensitive summary of an id sequence: at each lag L covering one beat of `bpm`
    (L = frame_rate*60/200 .. frame_rate*60/40 frames), the normalised autocorrelation of the
    id-change indicator (ids[t] != ids[t-1]) and the recurrence rate P(ids[t] == ids[t+L])."""
    ids = np.asarray(ids)
    lo = max(1, math.floor(frame_rate * 60 / bpm[1]))
    hi = math.ceil(frame_rate * 60 / bpm[0])
    lags = np.arange(lo, hi + 1)
    change = (ids[1:] != ids[:-1]).astype(np.float64)
    c = change - change.mean()
    denom = (c * c).sum() + 1e-9
    ac = np.array([(c[:-lag] * c[lag:]).sum() / denom if lag < len(c) else 0.0 for lag in lags])
    rec = np.array([np.mean(ids[:-lag] == ids[lag:]) if lag < len(ids) else 0.0 for lag in lags])
    return np.concatenate([ac, rec]).astype(np.float32)
