"""`mmtok codec fit`: train a small EnCodec-architecture codec on local audio.

The model is `encodec.EncodecModel` built from the package's own modules (SEANetEncoder /
SEANetDecoder / ResidualVectorQuantizer, see `codec.build_encodec`), so encode/decode are
encodec's. Training, as in the EnCodec paper:
- codebooks are k-means-initialised on encoder outputs of the training audio (residual
  k-means, one codebook after another, cdist/argmin: seconds on CPU), so codes are
  non-degenerate at ANY time budget, even `minutes=0`, and refined by k-means once more at
  the end (from the trained codebooks) because EMA codebooks lag a fast-moving encoder;
- in between, `minutes` of Adam (linear warm-up, gradient norm clipped) on 0.1 * L1(time) +
  L1(multi-scale log-mel) + commitment relative to the encoder output's variance, with a random
  bandwidth per step (so every codebook count works) and encodec's EMA codebook updates with
  dead-code replacement (codes used less than `dead_code_threshold` get re-seeded from the batch);
- `adversarial=True` adds encodec's MS-STFT discriminator (hinge + feature matching) and a
  gradient balancer (EnCodec's: each loss's gradient on the output normalised, then weighted;
  written here because the pinned encodec 0.1.1 wheel ships no balancer module).
Checkpoints (`fit_state.pt`, atomic) are written every `checkpoint_seconds` and at the end; a
rerun with the same `out` resumes from it, and `minutes` counts over all runs together (a fit
stopped at minute 20 of 24 trains 4 more; `minutes=40` on a finished 24-minute fit trains 16
more). The output directory loads with `load_codec(out)`.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.tokenizer.audio_io import AudioInputError, AudioSource, CodecInput
from mmtok.tokenizer.codec import (FITTED_CONFIG, FITTED_WEIGHTS, build_encodec, collapse_problems, quiet_weight_norm,
                                   sha256_file)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}
STATE = "fit_state.pt"
WARMUP_STEPS = 200
# Gradient-norm clip. Measured on the `small` preset: norms of 25-55 with rare spikes past 1,000.
GRAD_CLIP = 20.0
# The fit stops as collapsed when the encoder output's variation over time on a fixed probe batch
# falls below this share of its value after initialisation (a dead encoder measures exactly 0).
MIN_ENCODER_VARIATION = 1e-4

# Architecture presets. hop = prod(ratios); frame rate = sample_rate / hop.
# bits per frame per codebook = log2(bins); kbps per codebook = bits * frame_rate / 1000.
# dead_code_threshold: a code whose EMA usage (frames per training step) falls below it is
# re-seeded from the batch; encodec's default 2 would expire almost every code at these batch
# sizes (B * 25 frames spread over `bins` codes is < 1 per code and step).
PRESETS = {
    # Tests: fits in seconds. 16 kHz, hop 640 -> 25 Hz, 4 codebooks x 256 (0.2 kbps each).
    "tiny": dict(arch=dict(sample_rate=16000, channels=1, n_filters=4, dimension=32, ratios=[8, 5, 4, 4],
                           lstm=0, causal=False, norm="weight_norm", n_q=4, bins=256,
                           target_bandwidths=[0.4, 0.8], dead_code_threshold=0.02),
                 batch_size=4, crop_seconds=1.0, lr=1e-3, max_audio_seconds=120),
    # CPU demo: 16 kHz, hop 640 -> 25 Hz, 8 codebooks x 1024 (0.25 kbps each); the demo uses 2-4.
    "small": dict(arch=dict(sample_rate=16000, channels=1, n_filters=16, dimension=64, ratios=[8, 5, 4, 4],
                            lstm=1, causal=False, norm="weight_norm", n_q=8, bins=1024,
                            target_bandwidths=[0.5, 1.0, 2.0], dead_code_threshold=0.01),
                  batch_size=8, crop_seconds=1.0, lr=3e-4, max_audio_seconds=1800),
}


@dataclass
class FitConfig:
    preset: str = "tiny"  # architecture + optimisation preset (PRESETS)
    minutes: float = 1.0  # wall-clock budget of the training loop over all resumed runs (k-means is extra)
    max_steps: int | None = None  # also stop after this many steps in total (reproducible fits)
    commitment_weight: float = 1.0  # weight of the commitment loss (relative to the encoder output's variance)
    adversarial: bool = False  # add the MS-STFT discriminator + loss balancer
    seed: int = 0  # crops, which files the audio cap keeps, k-means seeds, init
    kmeans_iters: int = 15  # Lloyd iterations per codebook
    kmeans_frames: int = 20000  # at most this many encoder frames for k-means
    checkpoint_seconds: float = 60.0  # write fit_state.pt at least this often
    name: str | None = None  # codec name (default: mmtok_<preset>)
    progress: bool = True  # tqdm progress bar on stderr


def find_audio(spec) -> list[Path]:
    """A directory (searched recursively), one audio file, or a manifest (.txt: a path per line;
    .jsonl: objects with "audio"/"path"; relative paths are relative to the manifest)."""
    spec = Path(spec)
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif spec.suffix.lower() in AUDIO_SUFFIXES:
        files = [spec]
    elif spec.is_file():
        files = []
        for n, line in enumerate(spec.read_text().splitlines(), 1):
            if not line.strip():
                continue
            if spec.suffix == ".jsonl":
                row = json.loads(line)
                line = row.get("audio") or row.get("path") or row.get("audio_path")
                if not line:
                    raise ValueError(f"{spec}:{n}: no 'audio' or 'path' field")
            p = Path(line.strip())
            files.append(p if p.is_absolute() else spec.parent / p)
    else:
        raise FileNotFoundError(f"{spec}: no such audio directory, file or manifest")
    if not files:
        raise ValueError(f"{spec}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) found")
    return files


def load_training_audio(files, sample_rate: int, max_seconds: float, seed: int | None = None,
                        skipped: list | None = None) -> list[torch.Tensor]:
    """Mono waveforms at `sample_rate`, at most `max_seconds` in total: whole files, in the
    listing's order, or in a random order drawn from `seed` so that a capped selection spreads
    over the whole listing (a sorted manifest's head is often one kind of music).

    An unreadable file raises, unless a `skipped` list is given: then it is left out and recorded
    there as {"audio", "reason"} (one bad file in a large corpus should not stop a fit)."""
    if seed is not None:
        files = list(files)
        random.Random(seed).shuffle(files)
    out, left = [], int(max_seconds * sample_rate)
    for f in files:
        if left <= 0:
            break
        try:
            with AudioSource(f) as src:
                inp = CodecInput(src, sample_rate, 1)
                wav = inp.read(0, min(inp.n_samples, left))[0]  # (n,)
        except (AudioInputError, OSError) as e:
            if skipped is None:
                raise
            skipped.append({"audio": str(f), "reason": str(e)})
            continue
        out.append(wav)
        left -= wav.numel()
    return out


def random_crops(audio: list[torch.Tensor], n: int, length: int, gen: random.Random) -> torch.Tensor:
    """(n, 1, length) crops, files picked by length; short files are zero-padded."""
    weights = [w.numel() for w in audio]
    batch = torch.zeros(n, 1, length)
    for i, w in enumerate(gen.choices(audio, weights=weights, k=n)):
        s = gen.randint(0, max(0, w.numel() - length))
        crop = w[s : s + length]
        batch[i, 0, : crop.numel()] = crop
    return batch


@torch.no_grad()
def variance_preserving_init(model, gain: float = 2 ** 0.5) -> None:
    """Give every weight-normed conv rows of norm `gain` and zero bias. PyTorch's default conv
    init shrinks the signal ~3x per layer, so a fresh SEANet outputs a near-constant vector
    (time variation ~1e-4 of its offset) and k-means would cluster float noise."""
    for m in model.modules():
        if hasattr(m, "weight_g"):
            m.weight_g.fill_(gain)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()


@torch.no_grad()
def kmeans_codebooks(layers, x: torch.Tensor, iters: int = 15, seed: int = 0, frames_per_step: float = 1.0,
                     from_current: bool = False) -> None:
    """Residual k-means of frames x (N, D) into encodec VectorQuantization `layers`: codebook q
    clusters what codebooks < q left over (cdist/argmin Lloyd steps: seconds on CPU, where
    encodec's own k-means takes minutes). `from_current` starts from the layers' codebooks;
    empty clusters are re-seeded on random frames (dead-code replacement)."""
    gen = torch.Generator().manual_seed(seed)
    for layer in layers:
        cb = layer._codebook
        k = cb.codebook_size
        seeds = torch.randint(0, x.shape[0], (k,), generator=gen)
        jitter = 1e-4 * x.std() * torch.randn(k, x.shape[1], generator=gen)  # break ties
        means = cb.embed.clone() if from_current else x[seeds] + jitter
        for _ in range(iters):
            assign = torch.cdist(x, means).argmin(dim=1)  # (N,)
            counts = torch.bincount(assign, minlength=k).float()
            sums = torch.zeros_like(means).index_add_(0, assign, x)
            means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], x[seeds] + jitter)
        assign = torch.cdist(x, means).argmin(dim=1)
        # EMA state consistent with the means (embed = embed_avg / cluster_size), in per-step
        # units: counts scaled to one training batch's frames, so EMA updates start in balance.
        counts = torch.bincount(assign, minlength=k).float() * frames_per_step / x.shape[0]
        cb.embed.copy_(means)
        cb.embed_avg.copy_(means * counts[:, None])
        cb.cluster_size.copy_(counts)
        cb.inited.fill_(1)
        x = x - means[assign]  # residual for the next codebook


@torch.no_grad()
def fit_codebooks(model, audio: list[torch.Tensor], cfg: FitConfig, frames_per_step: float,
                  from_current: bool = False) -> None:
    """k-means the codebooks on encoder frames of the training audio.

    Run before training and again after it (`from_current`): EMA codebooks lag behind an
    encoder that moves fast early in training, and this final pass guarantees every codebook is
    in use on the training audio whatever the time budget was.
    """
    model.eval()
    x = torch.cat([model.encoder(w[None, None])[0].T for w in audio])  # (N, D) encoder frames
    if x.shape[0] > cfg.kmeans_frames:
        gen = torch.Generator().manual_seed(cfg.seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[: cfg.kmeans_frames]]
    kmeans_codebooks(model.quantizer.vq.layers, x, cfg.kmeans_iters, cfg.seed, frames_per_step, from_current)


@torch.no_grad()
def encoder_variation(model, probe: torch.Tensor) -> float:
    """Mean over channels of the encoder output's standard deviation over time on `probe`
    (B, 1, L): 0 when the encoder no longer depends on its input."""
    was_training = model.training
    model.eval()
    variation = model.encoder(probe).std(dim=-1).mean().item()  # (B, D, T) -> scalar
    model.train(was_training)
    return variation


def kmeans_encodec_repository(out, audio_files, n_q: int = 2, seconds: float = 20.0,
                              names=("encodec_24khz", "encodec_48khz")) -> Path:
    """An offline stand-in for encodec's pretrained weights (tests, benchmarks): the real
    architectures with `pretrained=False` (random encoders) and their first `n_q` codebooks
    k-means-initialised on `seconds` of real audio, saved as `encodec_<rate>-<sha256[:8]>.th`
    (the name scheme encodec's `_get_pretrained` verifies) for `load_codec(..., repository=out)`.
    Speed and the code/decode paths are real; the codes only exercise the pipeline."""
    import hashlib

    from encodec import EncodecModel

    from mmtok.tokenizer.codec import PRETRAINED

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
        kmeans_codebooks(model.quantizer.vq.layers[:n_q], torch.cat(frames), iters=10)
        tmp = out / f"{name}.tmp"
        torch.save(model.state_dict(), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        os.replace(tmp, out / f"{name}-{digest}.th")
    return out


class MelLoss(torch.nn.Module):
    """L1 between log-mel spectrograms at several FFT sizes (EnCodec's l_f, simplified)."""

    def __init__(self, sample_rate: int, n_ffts=(256, 512, 1024, 2048)):
        super().__init__()
        import torchaudio

        self.mels = torch.nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n, hop_length=n // 4,
                                                 n_mels=min(64, n // 8), power=1.0)
            for n in n_ffts)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for mel in self.mels:
            loss = loss + F.l1_loss(torch.log(mel(y_hat) + 1e-5), torch.log(mel(y) + 1e-5))
        return loss / len(self.mels)


class Balancer:
    """EnCodec's loss balancer: each loss's gradient w.r.t. the decoded audio is normalised by
    an EMA of its norm and weighted, so a loss's weight means its share of the update."""

    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, decay: float = 0.999):
        self.weights, self.total_norm, self.decay = weights, total_norm, decay
        self.ema: dict[str, float] = {}

    def backward(self, losses: dict[str, torch.Tensor], output: torch.Tensor, extra: torch.Tensor) -> None:
        """Backprop the balanced output gradient, plus `extra` (a loss that does not go through
        the output, e.g. commitment) unbalanced, in one pass over the shared graph."""
        grads = {}
        for name, loss in losses.items():
            (g,) = torch.autograd.grad(loss, [output], retain_graph=True)
            norm = g.norm().item()
            self.ema[name] = norm if name not in self.ema else self.decay * self.ema[name] + (1 - self.decay) * norm
            grads[name] = g
        total_w = sum(self.weights[n] for n in losses)
        out = sum(self.total_norm * self.weights[n] / total_w * grads[n] / (self.ema[n] + 1e-12) for n in losses)
        torch.autograd.backward([output, extra], [out, torch.ones_like(extra)])


def _hinge_generator(logits, fmaps_fake, fmaps_real):
    adv = sum(F.relu(1 - lg).mean() for lg in logits) / len(logits)
    feat = sum(F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-8)
               for ff, fr in zip(fmaps_fake, fmaps_real) for f, r in zip(ff, fr))
    return adv, feat / max(1, sum(len(ff) for ff in fmaps_fake))


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def fit_codec(audio, out, minutes: float = 1.0, preset: str = "tiny", adversarial: bool = False,
              seed: int = 0, progress: bool = True, name: str | None = None, **kw) -> Path:
    """Fit a codec on `audio` (directory, file or manifest) and write it to `out`. Returns `out`."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if minutes < 0:
        raise ValueError(f"minutes must be >= 0, got {minutes}")
    cfg = FitConfig(preset=preset, minutes=minutes, adversarial=adversarial, seed=seed,
                    name=name, progress=progress, **kw)
    p = PRESETS[preset]
    arch = dict(p["arch"], name=cfg.name or f"mmtok_{preset}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = random.Random(cfg.seed)

    files = find_audio(audio)
    skipped: list[dict] = []
    audio_list = load_training_audio(files, arch["sample_rate"], p["max_audio_seconds"], seed=cfg.seed,
                                     skipped=skipped)
    for item in skipped:
        warnings.warn(f"codec fit: skipping {item['reason']}")
    if not audio_list:
        raise ValueError(f"{audio}: none of the {len(files)} audio files could be read "
                         f"(first: {skipped[0]['reason']})")
    total_seconds = sum(w.numel() for w in audio_list) / arch["sample_rate"]
    model = build_encodec(arch)
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"], betas=(0.5, 0.9))
    disc = opt_d = balancer = None
    if adversarial:
        from encodec.msstftd import MultiScaleSTFTDiscriminator

        with quiet_weight_norm():
            disc = MultiScaleSTFTDiscriminator(filters=8, n_ffts=[512, 1024, 256], hop_lengths=[128, 256, 64],
                                               win_lengths=[512, 1024, 256])
        opt_d = torch.optim.Adam(disc.parameters(), lr=p["lr"], betas=(0.5, 0.9))
        balancer = Balancer({"l_t": 0.1, "l_f": 1.0, "g": 3.0, "feat": 3.0})
    step, trained_seconds, fit_seconds, refined_at = 0, 0.0, 0.0, None  # fit_seconds: the loop's clock, all runs
    frames_per_step = p["batch_size"] * p["crop_seconds"] * model.frame_rate
    crop = int(p["crop_seconds"] * arch["sample_rate"])
    probe = random_crops(audio_list, 16, crop, random.Random(cfg.seed + 1))  # (16, 1, L): liveness probe
    state_path = out / STATE
    if state_path.is_file():  # resume
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if json.loads(state["arch"]) != arch or bool(state["adversarial"]) != adversarial:
            raise ValueError(f"{state_path}: checkpoint is for another preset/options; remove it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if disc is not None:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        step, trained_seconds = int(state["step"]), float(state["trained_seconds"])
        # Checkpoints from before the budget was cumulative carry no clock: their budget starts now.
        fit_seconds = float(state.get("fit_seconds", 0.0))
        refined_at = state.get("refined_at_step")
        # Checkpoints from before the liveness check: measure from the resumed encoder instead.
        initial_variation = (float(state["initial_variation"]) if "initial_variation" in state
                             else encoder_variation(model, probe))
        gen.seed(cfg.seed + step)
    else:
        variance_preserving_init(model)
        fit_codebooks(model, audio_list, cfg, frames_per_step)
        initial_variation = encoder_variation(model, probe)

    def save_state():
        state = dict(model=model.state_dict(), opt=opt.state_dict(), step=step, trained_seconds=trained_seconds,
                     arch=json.dumps(arch), adversarial=adversarial, initial_variation=initial_variation,
                     fit_seconds=fit_seconds, refined_at_step=refined_at)
        if disc is not None:
            state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict())
        _atomic_save(state, state_path)

    def check_alive():
        """Stop a collapsed fit before it overwrites the last healthy checkpoint."""
        variation = encoder_variation(model, probe)
        if variation < MIN_ENCODER_VARIATION * initial_variation:
            raise RuntimeError(
                f"codec fit collapsed at step {step}: the encoder output no longer varies with its input "
                f"(variation {variation:.2e}, {initial_variation:.2e} after initialisation); {state_path} keeps "
                f"the last healthy checkpoint. Fit again with another seed or into another --out")

    mel_loss = MelLoss(arch["sample_rate"])
    resumed_seconds, t0, last_ckpt = fit_seconds, time.monotonic(), time.monotonic()
    budget = cfg.minutes * 60 - resumed_seconds
    if budget < -cfg.checkpoint_seconds:  # a fit cannot be untrained: say so instead of mislabelling it
        warnings.warn(f"{state_path} has {resumed_seconds / 60:.1f} minutes of training, more than the "
                      f"{cfg.minutes} asked; keeping it as it is (fit into another --out for a shorter fit)")
    bar = tqdm(desc=f"codec fit ({preset})", unit="step", disable=not cfg.progress, initial=step)
    losses = {}
    model.train()
    while time.monotonic() - t0 < budget and (cfg.max_steps is None or step < cfg.max_steps):
        x = random_crops(audio_list, p["batch_size"], crop, gen)  # (B, 1, L)
        bw = gen.choice(arch["target_bandwidths"])
        emb = model.encoder(x)  # (B, D, T)
        q = model.quantizer(emb, model.frame_rate, bw)
        y = model.decoder(q.quantized)[..., :crop]  # (B, 1, L)
        l_t, l_f = F.l1_loss(y, x), mel_loss(y, x)
        opt.zero_grad()
        # Commitment relative to the encoder output's variance: the absolute one (encodec's) falls
        # when the encoder shrinks its output, and on the `small` preset that pull drove the ELU
        # before the last conv into saturation (pre-activations ~ -76): a constant encoder.
        commit = cfg.commitment_weight * q.penalty / emb.var()
        if disc is None:
            (0.1 * l_t + l_f + commit).backward()
        else:
            logits_fake, fmaps_fake = disc(y)
            _, fmaps_real = disc(x)
            g, feat = _hinge_generator(logits_fake, fmaps_fake, fmaps_real)
            balancer.backward({"l_t": l_t, "l_f": l_f, "g": g, "feat": feat}, y, extra=commit)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        for group in opt.param_groups:  # linear warm-up: big early steps outrun the EMA codebooks
            group["lr"] = p["lr"] * min(1.0, (step + 1) / WARMUP_STEPS)
        opt.step()
        if disc is not None:  # discriminator step on detached audio
            real, _ = disc(x)
            fake, _ = disc(y.detach())
            d_loss = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)) / len(real)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        step += 1
        trained_seconds += x.shape[0] * p["crop_seconds"]
        losses = {"l_t": l_t.item(), "l_f": l_f.item(), "commit": commit.item()}
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
        if time.monotonic() - last_ckpt > cfg.checkpoint_seconds:
            check_alive()
            fit_seconds = resumed_seconds + time.monotonic() - t0
            save_state()
            last_ckpt = time.monotonic()
    bar.close()
    check_alive()
    fit_seconds = resumed_seconds + time.monotonic() - t0
    if refined_at != step:  # so a rerun of a finished fit changes nothing (k-means moves the codebooks)
        fit_codebooks(model, audio_list, cfg, frames_per_step, from_current=True)
        refined_at = step
    save_state()

    # Usage statistics on the training audio (the collapse guard's evidence, kept in codec.json).
    with torch.no_grad():
        model.set_target_bandwidth(max(arch["target_bandwidths"]))
        w = torch.cat(audio_list)[: 60 * arch["sample_rate"]]
        codes = model.encode(w[None, None])[0][0][0].numpy()  # (K, T)
    problems = collapse_problems(codes)
    if problems:
        raise RuntimeError(f"fitted codec collapsed on its own training audio: {'; '.join(problems)}")

    (out / FITTED_CONFIG).unlink(missing_ok=True)  # the config is the "complete" marker: remove first
    with atomic_path(out / FITTED_WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    config = {
        "format": "mmtok-codec", "version": 1, "arch": arch, "weights": FITTED_WEIGHTS,
        "sha256": sha256_file(out / FITTED_WEIGHTS),
        "training": {"preset": preset, "steps": step, "audio_seconds_seen": trained_seconds,
                     "train_audio_seconds": total_seconds, "fit_minutes": round(fit_seconds / 60, 2),
                     "train_files": len(audio_list), "available_files": len(files),  # the max_audio_seconds cap
                     "skipped_files": skipped,  # unreadable files left out, with the reason
                     "adversarial": adversarial, "seed": seed,
                     "final_losses": losses,
                     "distinct_codes_per_codebook": [int(len(np.unique(r))) for r in codes]},
        "params": sum(t.numel() for t in model.parameters()),
    }
    write_text_atomic(out / FITTED_CONFIG, json.dumps(config, indent=2))
    return out
