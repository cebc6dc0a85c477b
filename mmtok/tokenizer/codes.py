"""`AudioCodes`: what a codec makes of one audio file, and what shards store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE_BYTES = 4  # one float32 scale per codec segment in ids, as its 4 little-endian IEEE bytes
# Generated scales: the last (most significant) byte, the sign and 7 exponent bits, is kept in
# [50, 63], the other three are free: positive normal float32 values in [2**-27, 2), which hold
# every scale encodec makes (a segment's RMS + 1e-8: at most ~1 for audio in [-1, 1]).
SCALE_TOP_BYTE_RANGE = (50, 64)


@dataclass
class AudioCodes:
    codes: np.ndarray  # (K, T) int64 codebook indices, K codebooks, T frames
    n_samples: int  # samples of the (resampled) input; decode trims to exactly this length
    sample_rate: int  # codec sample rate the codes are at (the input was resampled to it)
    codec: str  # codec id: "encodec_24khz", "encodec_48khz" or a fitted codec's name@checksum
    scales: np.ndarray | None = None  # (S,) float32, one per codec segment (encodec_48khz), else None
    frames_per_segment: int | None = None  # frames per scaled segment (with `scales`), else None
    gain_db: float = 0.0  # gain the loudness rule applied before encoding; decoding divides it out
    semantic: np.ndarray | None = None  # (T,) int64 semantic cluster id of each frame, or None
    # (tokenizers with a semantic stream; not needed to decode audio)

    def __post_init__(self):
        self.codes = np.asarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2:
            raise ValueError(f"AudioCodes.codes must be (K, T), got shape {self.codes.shape}")
        if self.semantic is not None:
            self.semantic = np.asarray(self.semantic, dtype=np.int64).reshape(-1)
            if self.semantic.size != self.codes.shape[1]:
                raise ValueError(f"{self.semantic.size} semantic ids for {self.codes.shape[1]} frames")
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
    # A short segment i (fewer than frames_per_segment frames) ends the audio within its last frame,
    # and audio past the last segment's stride would start another segment.
    n = min((i * stride + c * hop for i, c in enumerate(counts) if c < frames_per_segment),
            default=len(counts) * stride)
    n = min(n, len(counts) * stride)
    if segment_frame_counts(n, frames_per_segment, hop, overlap) != list(counts):
        raise ValueError(f"segment frame counts {list(counts)} match no audio length")
    return n


def segment_stride(frames_per_segment: int, hop: int, overlap: float = 0.01) -> int:
    """Samples between the starts of consecutive segments (encodec's `segment_stride`)."""
    return max(1, int((1 - overlap) * frames_per_segment * hop))


def segment_starts(n_samples: int, frames_per_segment: int, hop: int, overlap: float = 0.01) -> list[int]:
    """The frame index at which each segment's frames begin in AudioCodes.codes."""
    counts = segment_frame_counts(n_samples, frames_per_segment, hop, overlap)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if counts else []


def longest_segment_length(n_frames: int, frames_per_segment: int, hop: int, overlap: float = 0.01) -> int:
    """The most samples whose segments hold at most `n_frames` frames in all (0 if none fits).

    Every segment but the last holds `frames_per_segment` frames; the last one at most
    ceil(stride / hop) (149 for encodec_48khz): audio that reaches further starts another segment."""
    if n_frames < 1:
        return 0
    stride = segment_stride(frames_per_segment, hop, overlap)
    full = (n_frames - 1) // frames_per_segment  # whole segments before the last one
    last = n_frames - full * frames_per_segment
    n = full * stride + min(last * hop, stride)
    while sum(segment_frame_counts(n, frames_per_segment, hop, overlap)) > n_frames:  # never with encodec's sizes
        n -= 1
    return n


def crop_segments(codes: AudioCodes, first: int, n_samples: int, hop: int, overlap: float = 0.01) -> AudioCodes:
    """`n_samples` of audio from the start of segment `first` of segmented codes (encodec_48khz):
    whole segments with their scales; each kept segment keeps the prefix of its frames that this
    length gives it (only the last one can be cut), so the crop is the codes of a valid length."""
    fps = codes.frames_per_segment
    if codes.scales is None or fps is None:
        raise ValueError("crop_segments needs codes with per-segment scales")
    stride = segment_stride(fps, hop, overlap)
    counts = segment_frame_counts(codes.n_samples, fps, hop, overlap)
    if not 0 <= first < len(counts):
        raise ValueError(f"segment {first} out of range: the codes have {len(counts)} segments")
    n_samples = min(n_samples, codes.n_samples - first * stride)
    kept = segment_frame_counts(n_samples, fps, hop, overlap)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    frames = np.concatenate([np.arange(starts[first + i], starts[first + i] + c) for i, c in enumerate(kept)]
                            or [np.zeros(0, int)])  # the kept frames' indices
    return AudioCodes(codes.codes[:, frames], n_samples, codes.sample_rate, codes.codec,
                      codes.scales[first : first + len(kept)].copy(), fps, codes.gain_db,
                      None if codes.semantic is None else codes.semantic[frames])
