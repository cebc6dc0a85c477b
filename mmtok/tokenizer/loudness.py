"""The loudness rule: every clip reaches the codec at one loudness, whatever level it was made at.

A captioner trained on clips at one level reads level as if it were timbre: the same music
played 10 dB louder became another instrument. So audio is brought to a target loudness before
it is encoded, by the same function wherever audio enters the model (sharding, captioning,
evaluation: all go through `MultimodalTokenizer.encode_audio`), and the rule is stored in the
tokenizer directory so that training and inference agree.

    lufs  ITU-R BS.1770-4 integrated loudness (K-weighted, gated: silent passages do not pull
          the measure down), measured with pyloudnorm on the audio as the codec sees it (its
          rate and channels). Clips shorter than one 400 ms gating block fall back to the
          RMS level (dBFS, minus BS.1770's 0.691 dB offset).
    rms   plain RMS level in dBFS (ungated).
    none  the audio as it is (tokenizers built before the rule existed, and codecs that
          normalise by themselves: encodec_48khz scales each 1 s segment and keeps the scale
          in its tokens, so a second normalisation would only be undone).

The gain is one number per clip (a linear scale of the whole clip), limited three ways: no
gain is applied to silence (loudness below `silence_db`), a quiet clip is raised by at most
`max_gain_db` (so near-silence is not blown up into noise), and the gained peak stays at or
below `peak_db` dBFS (sample peak). The gain is kept in `AudioCodes.gain_db`, and decoding
divides it out again, so a round trip returns the input's level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyloudnorm

MODES = ("lufs", "rms", "none")
BS1770_OFFSET_DB = -0.691  # BS.1770's constant: a 0 dBFS 997 Hz sine reads -3.01 LUFS
BLOCK_SECONDS = 0.4  # BS.1770's gating block


@dataclass(frozen=True)
class LoudnessRule:
    mode: str = "none"  # lufs | rms | none (see the module docstring)
    target_db: float = -23.0  # target loudness: LUFS for `lufs` (EBU R128's -23), dBFS RMS for `rms`
    peak_db: float = -1.0  # the gained clip's sample peak stays at or below this (dBFS)
    max_gain_db: float = 30.0  # raise a quiet clip by at most this much
    silence_db: float = -70.0  # clips measuring below this are left as they are (BS.1770's absolute gate)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"loudness mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.peak_db > 0 or self.max_gain_db < 0:
            raise ValueError(f"loudness peak_db must be <= 0 and max_gain_db >= 0, got {self.peak_db}, "
                             f"{self.max_gain_db}")

    @classmethod
    def parse(cls, spec: str) -> LoudnessRule:
        """`lufs`, `lufs:-20`, `rms:-18` or `none` (the command line's --loudness)."""
        mode, _, target = spec.partition(":")
        return cls(mode=mode, **({"target_db": float(target)} if target else {}))

    def loudness_db(self, wav: np.ndarray, sample_rate: int) -> float:
        """Loudness of (C, n) float audio by this rule's measure (-inf for digital silence)."""
        if self.mode == "lufs" and wav.shape[1] > BLOCK_SECONDS * sample_rate:
            return float(pyloudnorm.Meter(sample_rate).integrated_loudness(wav.T.astype(np.float64)))
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
        level = 20 * np.log10(rms) if rms > 0 else -np.inf
        return level + (BS1770_OFFSET_DB if self.mode == "lufs" else 0.0)

    def gain_db(self, wav: np.ndarray, sample_rate: int) -> float:
        """The gain (dB) that brings `wav` (C, n) to the target, within the three limits."""
        if self.mode == "none" or wav.size == 0:
            return 0.0
        loudness = self.loudness_db(wav, sample_rate)
        if not np.isfinite(loudness) or loudness < self.silence_db:
            return 0.0
        gain = min(self.target_db - loudness, self.max_gain_db)
        peak = float(np.abs(wav).max())
        return float(min(gain, self.peak_db - 20 * np.log10(peak)))  # peak > 0: the clip is not silent


def apply_gain(wav, gain_db: float):
    """wav * 10^(gain/20): numpy arrays and torch tensors alike (a no-op at 0 dB)."""
    return wav if gain_db == 0.0 else wav * (10.0 ** (gain_db / 20.0))
