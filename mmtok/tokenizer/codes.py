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
    gain_db: float = 0.0  # gain the loudness rule applied before encoding; decoding divides it out

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


def segment_frame_counts(n_samples: int, frames_per_segment: int, hop: int, overlap: float = 0.01) -> list[int]:
    """Frames of each segment a segmented codec (encodec_48khz: 1 s segments overlapping by
    `overlap`, encodec's default) makes from `n_samples` samples; the last ones may be short."""
    seg = frames_per_segment * hop
    stride = max(1, int((1 - overlap) * seg))  # encodec's EncodecModel.segment_stride
    return [-(-min(seg, n_samples - o) // hop) for o in range(0, n_samples, stride)]


def samples_for_segments(counts: list[int], frames_per_segment: int, hop: int, overlap: float = 0.01) -> int:
    """The longest `n_samples` whose `segment_frame_counts` are `counts` (ids carry frames, not
    samples); raises ValueError if no length gives them."""
    stride = max(1, int((1 - overlap) * frames_per_segment * hop))
    # A short segment i (fewer than frames_per_segment frames) ends the audio within its last frame.
    n = min((i * stride + c * hop for i, c in enumerate(counts) if c < frames_per_segment), default=0)
    if segment_frame_counts(n, frames_per_segment, hop, overlap) != list(counts):
        raise ValueError(f"segment frame counts {list(counts)} match no audio length")
    return n
