"""`AudioCodes`: what a codec makes of one audio file, and what shards store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AudioCodes:
    codes: np.ndarray  # (K, T) int64 codebook indices, K codebooks, T frames
    n_samples: int  # samples of the (resampled) input; decode trims to exactly this length
    sample_rate: int  # codec sample rate the codes are at (the input was resampled to it)
    codec: str  # codec id: "encodec_24khz", "encodec_48khz" or a fitted codec's name@checksum
    scales: np.ndarray | None = None  # (S,) float32, one per codec segment (encodec_48khz), else None
    frames_per_segment: int | None = None  # frames per scaled segment (with `scales`), else None

    def __post_init__(self):
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2:
            raise ValueError(f"AudioCodes.codes must be (K, T), got shape {self.codes.shape}")
        if self.scales is not None:
            self.scales = np.asarray(self.scales, dtype=np.float32).reshape(-1)

    @property
    def n_codebooks(self) -> int:
        return self.codes.shape[0]

    @property
    def n_frames(self) -> int:
        return self.codes.shape[1]

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate
