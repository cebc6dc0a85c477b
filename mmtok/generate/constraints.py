"""Modality constraints: which ids may come next, by logit masking over the `VocabLayout`.

A constraint answers `allowed(step, generated) -> bool (V,) or (B, V)` for the token about to be
generated (`step` tokens already generated for every row; rows advance in lockstep) and names
the `stop_ids` that end a row. The engine sets every other logit to -inf before sampling, so a
constrained output is well formed whatever the model's weights are.

- `TextConstraint`: text ids, then `<eos>` (a caption).
- `AudioConstraint`: codebook k's id block wherever the serialization puts codebook k, and
  `<eoa>` only after whole frames (or exactly after `n_frames` frames, for "--seconds S").

Scale-byte tokens (48 kHz EnCodec, `layout.n_scale_tokens > 0`) are not generated: the audio
constraint refuses such layouts; use encodec_24khz or a fitted codec for generation.
"""

from __future__ import annotations

import torch

from mmtok.tokenizer.layout import VocabLayout
from mmtok.tokenizer.patterns import check_pattern


class TextConstraint:
    """Only text ids (SentencePiece pieces) and `<eos>`, which ends the row."""

    def __init__(self, layout: VocabLayout, min_tokens: int = 1):
        self.min_tokens = min_tokens  # text tokens before <eos> may come (no empty captions)
        self.stop_ids = (layout.eos_id,)
        self.text = torch.zeros(len(layout), dtype=torch.bool)
        self.text[: layout.text_size] = True
        self.text_or_eos = self.text.clone()
        self.text_or_eos[layout.eos_id] = True

    def allowed(self, step: int, generated: torch.Tensor) -> torch.Tensor:  # (V,)
        return self.text if step < self.min_tokens else self.text_or_eos


class AudioConstraint:
    """Audio ids in the serialization's codebook order, closed by `<eoa>` on a frame boundary.

    n_codebooks: codebooks per frame (K); default all the layout holds.
    n_frames: exact frames to generate, then `<eoa>`; None = the model decides when to stop,
        at any whole frame (frame_major only). Generate with max_new_tokens >= `max_new_tokens`.
    pattern: `frame_major` (t0k0 t0k1 ... t1k0 ...) or `coarse_first` (needs n_frames).
    """

    def __init__(self, layout: VocabLayout, n_codebooks: int | None = None, n_frames: int | None = None,
                 pattern: str = "frame_major"):
        if layout.n_scale_tokens:
            raise NotImplementedError(
                "audio generation with scale-byte tokens (48 kHz EnCodec layouts) is not supported; "
                "use a layout without scale tokens (encodec_24khz or a fitted codec)"
            )
        self.k = layout.n_codebooks if n_codebooks is None else n_codebooks
        if not 0 < self.k <= layout.n_codebooks:
            raise ValueError(f"n_codebooks={n_codebooks} not in [1, {layout.n_codebooks}] for this layout")
        self.pattern = check_pattern(pattern)
        if pattern == "coarse_first" and n_frames is None:
            raise ValueError("coarse_first audio needs a fixed n_frames (codebook k starts after k*n_frames tokens)")
        if n_frames is not None and n_frames <= 0:
            raise ValueError(f"n_frames must be positive, got {n_frames}")
        self.n_frames = n_frames
        self.stop_ids = (layout.eoa_id,)
        v = len(layout)
        self.blocks = torch.zeros(self.k, v, dtype=torch.bool)  # (K, V): codebook k's ids
        for k in range(self.k):
            start = layout.audio_base + k * layout.codebook_size
            self.blocks[k, start : start + layout.codebook_size] = True
        self.eoa = torch.zeros(v, dtype=torch.bool)
        self.eoa[layout.eoa_id] = True

    @property
    def max_new_tokens(self) -> int | None:
        """Tokens a fixed-length generation takes, `<eoa>` included (None when open-ended)."""
        return None if self.n_frames is None else self.n_frames * self.k + 1

    def allowed(self, step: int, generated: torch.Tensor) -> torch.Tensor:  # (V,)
        if self.n_frames is not None and step >= self.n_frames * self.k:
            return self.eoa
        if self.pattern == "coarse_first":
            return self.blocks[step // self.n_frames]
        k = step % self.k
        if k == 0 and step > 0 and self.n_frames is None:
            return self.blocks[0] | self.eoa  # a frame just closed: go on or stop
        return self.blocks[k]
