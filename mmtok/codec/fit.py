"""`mmtok codec fit`: train a small EnCodec-architecture codec on local audio.

The model is `encodec.EncodecModel` built from the package's own modules (SEANetEncoder /
SEANetDecoder / ResidualVectorQuantizer, see `mmtok.tokenizer.codec.build_encodec`), so encode/decode are
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
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.codec.audio import find_audio, load_training_audio, random_crops
from mmtok.codec.kmeans import fit_codebooks
from mmtok.codec.losses import Balancer, MelLoss, build_discriminator, discriminator_loss, generator_adversarial_loss
from mmtok.tokenizer.codec import FITTED_CONFIG, FITTED_WEIGHTS, build_encodec, collapse_problems, sha256_file

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
def encoder_variation(model, probe: torch.Tensor) -> float:
    """Mean over channels of the encoder output's standard deviation over time on `probe`
    (B, 1, L): 0 when the encoder no longer depends on its input."""
    was_training = model.training
    model.eval()
    variation = model.encoder(probe).std(dim=-1).mean().item()  # (B, D, T) -> scalar
    model.train(was_training)
    return variation


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class CodecFit:
    """One fit in progress: the model and its optimisers, the step and clock counters, and the
    `fit_state.pt` checkpoint it resumes from and writes to."""

    def __init__(self, cfg: FitConfig, arch: dict, audio: list[torch.Tensor], out: Path):
        p = PRESETS[cfg.preset]
        self.cfg, self.arch, self.audio, self.state_path = cfg, arch, audio, out / STATE
        self.batch_size, self.crop_seconds, self.lr = p["batch_size"], p["crop_seconds"], p["lr"]
        self.crop = int(self.crop_seconds * arch["sample_rate"])
        self.gen = random.Random(cfg.seed)  # crops and bandwidths
        self.model = build_encodec(arch)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, betas=(0.5, 0.9))
        self.disc = self.opt_d = self.balancer = None
        if cfg.adversarial:
            self.disc = build_discriminator()
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=self.lr, betas=(0.5, 0.9))
            self.balancer = Balancer({"l_t": 0.1, "l_f": 1.0, "g": 3.0, "feat": 3.0})
        self.step, self.trained_seconds, self.fit_seconds = 0, 0.0, 0.0  # fit_seconds: the loop's clock, all runs
        self.refined_at: int | None = None  # step of the last k-means refinement
        self.frames_per_step = self.batch_size * self.crop_seconds * self.model.frame_rate
        self.probe = random_crops(audio, 16, self.crop, random.Random(cfg.seed + 1))  # (16, 1, L): liveness probe
        self.initial_variation = 0.0
        self.losses: dict[str, float] = {}

    def start(self) -> None:
        """Resume from `fit_state.pt`, or initialise: variance-preserving weights, k-means codebooks."""
        if not self.state_path.is_file():
            variance_preserving_init(self.model)
            self.fit_codebooks()
            self.initial_variation = encoder_variation(self.model, self.probe)
            return
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        if json.loads(state["arch"]) != self.arch or bool(state["adversarial"]) != self.cfg.adversarial:
            raise ValueError(f"{self.state_path}: checkpoint is for another preset/options; "
                             "remove it or use another --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.trained_seconds = int(state["step"]), float(state["trained_seconds"])
        # Checkpoints from before the budget was cumulative carry no clock: their budget starts now.
        self.fit_seconds = float(state.get("fit_seconds", 0.0))
        self.refined_at = state.get("refined_at_step")
        # Checkpoints from before the liveness check: measure from the resumed encoder instead.
        self.initial_variation = (float(state["initial_variation"]) if "initial_variation" in state
                                  else encoder_variation(self.model, self.probe))
        self.gen.seed(self.cfg.seed + self.step)

    def fit_codebooks(self, from_current: bool = False) -> None:
        fit_codebooks(self.model, self.audio, self.cfg.kmeans_iters, self.cfg.kmeans_frames, self.cfg.seed,
                      self.frames_per_step, from_current)

    def train_step(self, mel_loss: MelLoss) -> None:
        model, x = self.model, random_crops(self.audio, self.batch_size, self.crop, self.gen)  # (B, 1, L)
        bw = self.gen.choice(self.arch["target_bandwidths"])
        emb = model.encoder(x)  # (B, D, T)
        q = model.quantizer(emb, model.frame_rate, bw)
        y = model.decoder(q.quantized)[..., : self.crop]  # (B, 1, L)
        l_t, l_f = F.l1_loss(y, x), mel_loss(y, x)
        self.opt.zero_grad()
        # Commitment relative to the encoder output's variance: the absolute one (encodec's) falls
        # when the encoder shrinks its output, and on the `small` preset that pull drove the ELU
        # before the last conv into saturation (pre-activations ~ -76): a constant encoder.
        commit = self.cfg.commitment_weight * q.penalty / emb.var()
        if self.disc is None:
            (0.1 * l_t + l_f + commit).backward()
        else:
            logits_fake, fmaps_fake = self.disc(y)
            _, fmaps_real = self.disc(x)
            g, feat = generator_adversarial_loss(logits_fake, fmaps_fake, fmaps_real)
            self.balancer.backward({"l_t": l_t, "l_f": l_f, "g": g, "feat": feat}, y, extra=commit)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        for group in self.opt.param_groups:  # linear warm-up: big early steps outrun the EMA codebooks
            group["lr"] = self.lr * min(1.0, (self.step + 1) / WARMUP_STEPS)
        self.opt.step()
        if self.disc is not None:  # discriminator step on detached audio
            d_loss = discriminator_loss(self.disc, x, y.detach())
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
        self.step += 1
        self.trained_seconds += x.shape[0] * self.crop_seconds
        self.losses = {"l_t": l_t.item(), "l_f": l_f.item(), "commit": commit.item()}

    def check_alive(self) -> None:
        """Stop a collapsed fit before it overwrites the last healthy checkpoint."""
        variation = encoder_variation(self.model, self.probe)
        if variation < MIN_ENCODER_VARIATION * self.initial_variation:
            raise RuntimeError(
                f"codec fit collapsed at step {self.step}: the encoder output no longer varies with its input "
                f"(variation {variation:.2e}, {self.initial_variation:.2e} after initialisation); "
                f"{self.state_path} keeps the last healthy checkpoint. Fit again with another seed or into "
                "another --out")

    def save_state(self) -> None:
        state = dict(model=self.model.state_dict(), opt=self.opt.state_dict(), step=self.step,
                     trained_seconds=self.trained_seconds, arch=json.dumps(self.arch),
                     adversarial=self.cfg.adversarial, initial_variation=self.initial_variation,
                     fit_seconds=self.fit_seconds, refined_at_step=self.refined_at)
        if self.disc is not None:
            state.update(disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict())
        _atomic_save(state, self.state_path)

    def run(self) -> None:
        """Train until the budget (minutes over all runs) or max_steps; checkpoint on the way."""
        cfg = self.cfg
        mel_loss = MelLoss(self.arch["sample_rate"])
        resumed_seconds, t0 = self.fit_seconds, time.monotonic()
        last_ckpt = t0
        budget = cfg.minutes * 60 - resumed_seconds
        if budget < -cfg.checkpoint_seconds:  # a fit cannot be untrained: say so instead of mislabelling it
            warnings.warn(f"{self.state_path} has {resumed_seconds / 60:.1f} minutes of training, more than "
                          f"the {cfg.minutes} asked; keeping it as it is (fit into another --out for a shorter fit)",
                          stacklevel=2)
        bar = tqdm(desc=f"codec fit ({cfg.preset})", unit="step", disable=not cfg.progress, initial=self.step)
        self.model.train()
        while time.monotonic() - t0 < budget and (cfg.max_steps is None or self.step < cfg.max_steps):
            self.train_step(mel_loss)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in self.losses.items()})
            if time.monotonic() - last_ckpt > cfg.checkpoint_seconds:
                self.check_alive()
                self.fit_seconds = resumed_seconds + time.monotonic() - t0
                self.save_state()
                last_ckpt = time.monotonic()
        bar.close()
        self.check_alive()
        self.fit_seconds = resumed_seconds + time.monotonic() - t0
        if self.refined_at != self.step:  # so a rerun of a finished fit changes nothing (k-means moves codebooks)
            self.fit_codebooks(from_current=True)
            self.refined_at = self.step
        self.save_state()

    def training_codes(self, seconds: float = 60.0) -> np.ndarray:
        """(K, T) codes of the first `seconds` of training audio at the largest bandwidth."""
        with torch.no_grad():
            self.model.set_target_bandwidth(max(self.arch["target_bandwidths"]))
            w = torch.cat(self.audio)[: int(seconds * self.arch["sample_rate"])]
            return self.model.encode(w[None, None])[0][0][0].numpy()


def write_codec(fit: CodecFit, out: Path, training: dict) -> None:
    """The fitted codec directory: weights, then codec.json (the "complete" marker) with its
    sha256 and the fit's record. Refuses a codec whose codes collapsed on its own training audio."""
    codes = fit.training_codes()
    problems = collapse_problems(codes)
    if problems:
        raise RuntimeError(f"fitted codec collapsed on its own training audio: {'; '.join(problems)}")
    (out / FITTED_CONFIG).unlink(missing_ok=True)  # the config is the "complete" marker: remove first
    with atomic_path(out / FITTED_WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in fit.model.state_dict().items()}, str(tmp))
    training = {"preset": fit.cfg.preset, "steps": fit.step, "audio_seconds_seen": fit.trained_seconds, **training,
                "fit_minutes": round(fit.fit_seconds / 60, 2), "adversarial": fit.cfg.adversarial,
                "seed": fit.cfg.seed, "final_losses": fit.losses,
                "distinct_codes_per_codebook": [int(len(np.unique(r))) for r in codes]}
    config = {
        "format": "mmtok-codec", "version": 1, "arch": fit.arch, "weights": FITTED_WEIGHTS,
        "sha256": sha256_file(out / FITTED_WEIGHTS), "training": training,
        "params": sum(t.numel() for t in fit.model.parameters()),
    }
    write_text_atomic(out / FITTED_CONFIG, json.dumps(config, indent=2))


def fit_codec(audio, out, minutes: float = 1.0, preset: str = "tiny", adversarial: bool = False,
              seed: int = 0, progress: bool = True, name: str | None = None, **kw) -> Path:
    """Fit a codec on `audio` (directory, file or manifest) and write it to `out`. Returns `out`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if minutes < 0:
        raise ValueError(f"minutes must be >= 0, got {minutes}")
    cfg = FitConfig(preset=preset, minutes=minutes, adversarial=adversarial, seed=seed,
                    name=name, progress=progress, **kw)
    arch = dict(PRESETS[preset]["arch"], name=cfg.name or f"mmtok_{preset}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    files = find_audio(audio)
    skipped: list[dict] = []
    audio_list = load_training_audio(files, arch["sample_rate"], PRESETS[preset]["max_audio_seconds"],
                                     seed=cfg.seed, skipped=skipped)
    for item in skipped:
        warnings.warn(f"codec fit: skipping {item['reason']}", stacklevel=2)
    if not audio_list:
        raise ValueError(f"{audio}: none of the {len(files)} audio files could be read "
                         f"(first: {skipped[0]['reason']})")
    fit = CodecFit(cfg, arch, audio_list, out)
    fit.start()
    fit.run()
    write_codec(fit, out, {
        "train_audio_seconds": sum(w.numel() for w in audio_list) / arch["sample_rate"],
        "train_files": len(audio_list), "available_files": len(files),  # the max_audio_seconds cap
        "skipped_files": skipped,  # unreadable files left out, with the reason
    })
    return out
