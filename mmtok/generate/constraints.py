"""Modality constraints: which ids may come next, by logit masking over the `VocabLayout`.

A constraint answers `allowed(step, generated) -> bool (V,) or (B, V)` for the token about to be
generated (`step` tokens already generated for every row; rows advance in lockstep) and names
the `stop_ids` that end a row. The engine sets every other logit to -inf before sampling, so a
constrained output is well formed whatever the model's weights are.

- `TextConstraint`: text ids, then `<eos>` (a caption).
- `AudioConstraint`: codebook k's id block wherever the serialization puts codebook k, and
  `<eoa>` only after whole frames (or exactly after `n_frames` frames, for "--seconds S").
  With a semantic stream each frame's semantic id is one more row, first in the frame, drawn from
  the semantic block: the model writes its plan of the frame before the frame's codes; with the
  "prefix" placement it writes all n_frames semantic ids first, then the codes (AudioLM's order).
  With per-segment scales (encodec_48khz layouts) each segment opens with its 4 scale-byte
  tokens, the last of them kept to SCALE_TOP_BYTE_RANGE (a positive float32 in [2**-27, 2)),
  then that segment's frames: the layout `MultimodalTokenizer.codes_to_ids` writes.
"""

from __future__ import annotations

import numpy as np
import torch

from mmtok.tokenizer.codes import SCALE_BYTES, SCALE_TOP_BYTE_RANGE
from mmtok.tokenizer.layout import VocabLayout
from mmtok.tokenizer.patterns import check_pattern, check_semantic_placement, codebook_order


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
    pattern: `frame_major` (t0k0 t0k1 ... t1k0 ...), `coarse_first` or `delay` (both need n_frames).
    segment_frames: layouts with scale tokens (encodec_48khz): the frames of each segment
        (`segment_frame_counts` of the audio length); each segment is 4 scale bytes, then its
        frames in `pattern` order. n_frames is then their sum.
    semantic_placement: with a semantic stream, "frame" (each frame's id first in the frame) or
        "prefix" (all n_frames ids before the codes; needs n_frames), as the tokenizer config says.
    """

    def __init__(self, layout: VocabLayout, n_codebooks: int | None = None, n_frames: int | None = None,
                 pattern: str = "frame_major", segment_frames: list[int] | None = None,
                 semantic_placement: str = "frame"):
        self.k = layout.n_codebooks if n_codebooks is None else n_codebooks
        if not 0 < self.k <= layout.n_codebooks:
            raise ValueError(f"n_codebooks={n_codebooks} not in [1, {layout.n_codebooks}] for this layout")
        self.pattern = check_pattern(pattern)
        if layout.n_scale_tokens:
            if not segment_frames or min(segment_frames) < 1:
                raise ValueError("a layout with scale-byte tokens (encodec_48khz) needs segment_frames: the "
                                 "frames of each segment (segment_frame_counts of the audio length)")
            if n_frames is not None and n_frames != sum(segment_frames):
                raise ValueError(f"n_frames={n_frames} but segment_frames hold {sum(segment_frames)}")
            n_frames = sum(segment_frames)
        elif segment_frames is not None:
            raise ValueError("segment_frames is for layouts with scale-byte tokens (encodec_48khz)")
        if pattern != "frame_major" and n_frames is None:
            raise ValueError(f"{pattern} audio needs a fixed n_frames (where codebook k goes depends on the length)")
        prefix = bool(layout.n_semantic) and check_semantic_placement(semantic_placement) == "prefix"
        if prefix and n_frames is None:
            raise ValueError("semantic ids placed as a prefix need a fixed n_frames (the codes start after them)")
        if n_frames is not None and n_frames <= 0:
            raise ValueError(f"n_frames must be positive, got {n_frames}")
        self.n_frames = n_frames
        self.stop_ids = (layout.eoa_id,)
        sem = 1 if layout.n_semantic else 0
        r = self.rows = self.k + sem  # ids per frame: the semantic id (row 0, if any), then K codebooks
        # masks: 0..R-1 row r's ids; R any scale byte; R+1 a scale's last byte; R+2 <eoa>
        masks = torch.zeros(r + 3, len(layout), dtype=torch.bool)
        row = torch.from_numpy(layout.row_of(np.arange(len(layout))))  # (V,) the row each id belongs to
        masks[:r] = row[None] == torch.arange(r)[:, None]
        masks[r, layout.scale_base : layout.scale_base + layout.n_scale_tokens] = True
        lo, hi = SCALE_TOP_BYTE_RANGE
        masks[r + 1, layout.scale_base + lo : layout.scale_base + hi] = bool(layout.n_scale_tokens)
        masks[r + 2, layout.eoa_id] = True
        self.masks, self.blocks, self.eoa = masks, masks[:r], masks[r + 2]
        self.schedule = None  # fixed length: the mask of every step
        if n_frames is not None:
            parts = [torch.zeros(n_frames if prefix else 0, dtype=torch.int64)]  # row 0: the semantic prefix
            for frames in segment_frames or [n_frames]:
                if segment_frames:
                    parts.append(torch.tensor([r] * (SCALE_BYTES - 1) + [r + 1]))
                if prefix:  # the codes alone under the pattern: rows 1..K
                    parts.append(torch.from_numpy(codebook_order(self.k, frames, pattern) + 1))
                else:
                    parts.append(torch.from_numpy(codebook_order(r, frames, pattern)))
            parts.append(torch.tensor([r + 2]))
            self.schedule = torch.cat(parts)

    @property
    def max_new_tokens(self) -> int | None:
        """Tokens a fixed-length generation takes, `<eoa>` included (None when open-ended)."""
        return None if self.schedule is None else len(self.schedule)

    def allowed(self, step: int, generated: torch.Tensor) -> torch.Tensor:  # (V,)
        if self.schedule is not None:
            return self.masks[self.schedule[min(step, len(self.schedule) - 1)]]
        k = step % self.rows
        if k == 0 and step > 0:
            return self.blocks[0] | self.eoa  # a frame just closed: go on or stop
        return self.blocks[k]
