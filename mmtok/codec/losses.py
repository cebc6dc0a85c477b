"""The codec's training losses: multi-scale mel L1, MS-STFT adversarial + feature matching, and
EnCodec's gradient balancer (written here because the pinned encodec 0.1.1 wheel ships none)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from encodec.msstftd import MultiScaleSTFTDiscriminator

from mmtok.tokenizer.codec import quiet_weight_norm


class MelLoss(torch.nn.Module):
    """L1 between log-mel spectrograms at several FFT sizes (EnCodec's l_f, simplified)."""

    def __init__(self, sample_rate: int, n_ffts=(256, 512, 1024, 2048)):
        super().__init__()
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


def generator_adversarial_loss(logits, fmaps_fake, fmaps_real):
    adv = sum(F.relu(1 - lg).mean() for lg in logits) / len(logits)
    feat = sum(F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-8)
               for ff, fr in zip(fmaps_fake, fmaps_real) for f, r in zip(ff, fr))
    return adv, feat / max(1, sum(len(ff) for ff in fmaps_fake))


def discriminator_loss(disc, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator on real audio and (detached) decoded audio."""
    logits_real, _ = disc(real)
    logits_fake, _ = disc(fake)
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(logits_real, logits_fake)) / len(logits_real)


def build_discriminator() -> MultiScaleSTFTDiscriminator:
    """encodec's MS-STFT discriminator, scaled down for CPU fits (8 filters, 3 scales)."""
    with quiet_weight_norm():
        return MultiScaleSTFTDiscriminator(filters=8, n_ffts=[512, 1024, 256], hop_lengths=[128, 256, 64],
                                           win_lengths=[512, 1024, 256])
