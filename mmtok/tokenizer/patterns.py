"""Serializations of [K, T] codebook ids into one token stream, and back (exactly).

- `frame_major` (AnyGPT default): t0k0 t0k1 .. t0k(K-1) t1k0 ...  (one frame after another)
- `coarse_first`: all of codebook 0, then all of codebook 1, ... (coarse audio first)
- `delay` (MusicGen's codebook pattern, flattened): step s holds codebook k of frame s - k, for
  s = 0 .. T+K-2, codebooks in order; the K(K-1) empty positions of the first and last K-1
  steps (MusicGen's special "empty" token) are left out, so the stream is K*T ids like the others.

Every pattern is a permutation of the K*T positions (`positions`), so flattening and parsing are
exact inverses for any K and T. Keeping only the first k codebooks is done before serializing
(`n_codebooks` option of the tokenizer). Ids carry their row, so parsing checks that every
position holds the row the pattern puts there: a stream with a partial frame or shuffled
codebooks is refused instead of being silently misread.

A layout with a semantic stream places each frame's semantic id (row 0; codebook k is row k+1,
`VocabLayout.row_of`) in one of two ways (`SEMANTIC_PLACEMENTS`):
- `frame`: beside each frame, as one more row under the pattern (K+1 rows per frame): a crop or
  an open-ended generation always holds whole frames with their ids;
- `prefix` (AudioLM's stages): all T semantic ids first, then the K codebooks under the pattern:
  the model reads or writes the whole clip's plan before its acoustic tokens.
"""

from __future__ import annotations

import numpy as np

from mmtok.tokenizer.layout import VocabLayout

PATTERNS = ("frame_major", "coarse_first", "delay")
SEMANTIC_PLACEMENTS = ("frame", "prefix")


class PartialFrameError(ValueError):
    """An audio token stream that is not a whole number of K-codebook frames."""


def check_pattern(pattern: str) -> str:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown serialization {pattern!r}; choose one of {PATTERNS}")
    return pattern


def check_semantic_placement(placement: str) -> str:
    if placement not in SEMANTIC_PLACEMENTS:
        raise ValueError(f"unknown semantic placement {placement!r}; choose one of {SEMANTIC_PLACEMENTS}")
    return placement


def positions(n_codebooks: int, n_frames: int, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """(codebook, frame) of each of the K*T stream positions, as two (K*T,) int64 arrays."""
    k, t = n_codebooks, n_frames
    kk, tt = np.meshgrid(np.arange(k, dtype=np.int64), np.arange(t, dtype=np.int64), indexing="ij")  # (K, T)
    if check_pattern(pattern) == "frame_major":
        return kk.T.reshape(-1), tt.T.reshape(-1)  # (T, K) row-major: frame by frame
    if pattern == "coarse_first":
        return kk.reshape(-1), tt.reshape(-1)  # (K, T) row-major: codebook by codebook
    step = (tt + kk).reshape(-1)  # delay: codebook k of frame t sits at step t + k
    order = np.lexsort((kk.reshape(-1), step))  # by step, then codebook
    return kk.reshape(-1)[order], tt.reshape(-1)[order]


def codebook_order(n_codebooks: int, n_frames: int, pattern: str) -> np.ndarray:
    """The codebook each stream position holds (what a constrained generator must write there)."""
    return positions(n_codebooks, n_frames, pattern)[0]


def flatten(ids: np.ndarray, pattern: str) -> np.ndarray:
    """(K, T) audio ids -> (K*T,) stream."""
    ids = np.asarray(ids)
    kk, tt = positions(ids.shape[0], ids.shape[1], pattern)
    return ids[kk, tt]


def unflatten(stream: np.ndarray, n_rows: int, pattern: str, layout: VocabLayout,
              source: str = "audio tokens", first_row: int = 0) -> np.ndarray:
    """(R*T,) stream -> (R, T) ids, R = the rows per frame (`VocabLayout.row_of`: codebooks, and
    the semantic id first when the layout has one and places it beside each frame); refuses
    partial frames and misplaced rows. first_row: the row of the stream's row 0 (1 for the codes
    of a layout whose semantic ids come first as a prefix)."""
    stream = np.asarray(stream, dtype=np.int64)
    k = n_rows
    if stream.size % k:
        raise PartialFrameError(f"{source}: {stream.size} audio tokens is not a whole number of "
                                f"{k}-token frames ({stream.size % k} left over: a partial frame)")
    kk, tt = positions(k, stream.size // k, check_pattern(pattern))
    found = layout.row_of(stream) - first_row
    bad = np.flatnonzero(found != kk)
    if bad.size:
        i = bad[0]
        rows = "row 0 the semantic id, row k+1 codebook k" if layout.n_semantic else "row k codebook k"
        raise PartialFrameError(f"{source}: frame {tt[i]} position {kk[i]} holds a row-{found[i] + first_row} token "
                                f"where {pattern} puts row {kk[i] + first_row} ({rows}; misaligned or partial frame)")
    ids = np.empty((k, stream.size // k), dtype=np.int64)
    ids[kk, tt] = stream
    return ids
