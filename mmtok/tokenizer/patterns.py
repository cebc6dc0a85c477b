"""Serializations of [K, T] codebook ids into one token stream, and back (exactly).

- `frame_major` (AnyGPT default): t0k0 t0k1 .. t0k(K-1) t1k0 ...  (one frame after another)
- `coarse_first`: all of codebook 0, then all of codebook 1, ... (coarse audio first)

Keeping only the first k codebooks is done before serializing (`n_codebooks` option of the
tokenizer). Ids carry their codebook (`VocabLayout.codebook_of`), so parsing checks that every
position holds the codebook the pattern puts there: a stream with a partial frame or shuffled
codebooks is refused instead of being silently misread.
"""

from __future__ import annotations

import numpy as np

from mmtok.tokenizer.layout import VocabLayout

PATTERNS = ("frame_major", "coarse_first")


class PartialFrameError(ValueError):
    """An audio token stream that is not a whole number of K-codebook frames."""


def check_pattern(pattern: str) -> str:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown serialization {pattern!r}; choose one of {PATTERNS}")
    return pattern


def flatten(ids: np.ndarray, pattern: str) -> np.ndarray:
    """(K, T) audio ids -> (K*T,) stream."""
    ids = np.asarray(ids)
    if check_pattern(pattern) == "frame_major":
        return ids.T.reshape(-1)  # (T, K) row-major: frame by frame
    return ids.reshape(-1)  # (K, T) row-major: codebook by codebook


def unflatten(stream: np.ndarray, n_codebooks: int, pattern: str, layout: VocabLayout,
              source: str = "audio tokens") -> np.ndarray:
    """(K*T,) stream -> (K, T) audio ids; refuses partial frames and misplaced codebooks."""
    stream = np.asarray(stream, dtype=np.int64)
    k = n_codebooks
    if stream.size % k:
        raise PartialFrameError(f"{source}: {stream.size} audio tokens is not a whole number of "
                                f"{k}-codebook frames ({stream.size % k} left over: a partial frame)")
    if check_pattern(pattern) == "frame_major":
        ids = stream.reshape(-1, k).T
    else:
        ids = stream.reshape(k, -1)
    expected = np.arange(k)[:, None]
    found = layout.codebook_of(ids)
    if (found != expected).any():
        kk, tt = np.argwhere(found != expected)[0]
        raise PartialFrameError(f"{source}: frame {tt} position {kk} holds a codebook-{found[kk, tt]} "
                                f"token where {pattern} puts codebook {kk} (misaligned or partial frame)")
    return ids
