"""The one vocabulary: where text, special, scale and audio ids live.

    [0, text_size)                      SentencePiece ids, unchanged
    [special_base, scale_base)          named specials (<pad>, <bos>, ...) then spare slots
    [scale_base, semantic_base)         256 byte tokens for per-segment scales (48 kHz codecs only)
    [semantic_base, audio_base)         semantic ids: one k-means cluster id per frame (tokenizers
                                        built with a semantic stream only; see tokenizer/semantic.py)
    [audio_base, audio_end)             one block per codebook: audio_base + k * codebook_size + code
    [audio_end, vocab_size)             padding so the embedding is a multiple of `pad_to`

The layout is the contract between tokenizer, shards, checkpoints and exported models, so it is
stored with a content hash; anything made with another layout is refused when loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum

import numpy as np

# Named special tokens. Order is part of the layout (and so of its hash).
PAD, BOS, EOS, SOA, EOA = "<pad>", "<bos>", "<eos>", "<soa>", "<eoa>"
# Task tokens (AnyGPT-style): the first token after <bos> says what the sequence is for.
TASK_CAPTION = "<task_caption>"  # audio -> text
TASK_GENERATE = "<task_generate>"  # text -> audio
TASK_TEXT = "<task_text>"  # text only
TASK_AUDIO = "<task_audio>"  # audio only
TASK_QA = "<task_qa>"  # audio + question -> answer
TASK_SEGMENTS = "<task_segments>"  # audio -> time-stamped captions of its sections
TASK_PLAYLIST = "<task_playlist>"  # several audio clips -> one caption of the set
SEP = "<sep>"  # ends a question; the answer follows
# The caption tasks' nine come first and the other tasks' tokens after them, all inside the
# SPECIAL_SLOTS block, so text, scale-byte and audio ids are the same with or without the task
# tokens. A tokenizer directory keeps its own list in layout.json: one with only the nine loads,
# with its own hash, and the tasks that need the others say so (`VocabLayout.require_specials`).
ORIGINAL_SPECIALS = (PAD, BOS, EOS, SOA, EOA, TASK_CAPTION, TASK_GENERATE, TASK_TEXT, TASK_AUDIO)
DEFAULT_SPECIALS = (*ORIGINAL_SPECIALS, TASK_QA, TASK_SEGMENTS, TASK_PLAYLIST, SEP)
SPECIAL_SLOTS = 32  # named + spare: room for new task tokens without moving audio ids
DEFAULT_SPARE = SPECIAL_SLOTS - len(DEFAULT_SPECIALS)

IGNORE_INDEX = -100  # target value that carries no loss (torch cross_entropy's default)


class Modality(IntEnum):
    TEXT = 0
    AUDIO = 1  # codebook ids, scale bytes and semantic ids
    SPECIAL = 2  # named specials and spare slots
    INVALID = 3  # padding slots past audio_end, or out of range


class LayoutMismatchError(ValueError):
    """Ids, shards or a checkpoint were made with a different vocabulary layout."""


@dataclass(frozen=True)
class VocabLayout:
    text_size: int  # number of SentencePiece pieces; text ids are [0, text_size)
    n_codebooks: int  # K codebooks per audio frame that the vocabulary holds
    codebook_size: int  # entries per codebook (1024 for EnCodec)
    special_tokens: tuple[str, ...] = DEFAULT_SPECIALS  # named specials, in id order
    n_spare: int = DEFAULT_SPARE  # reserved unnamed slots after the named specials
    n_scale_tokens: int = 0  # 256 when the codec has per-segment scales (encodec_48khz), else 0
    n_semantic: int = 0  # semantic cluster ids (the stream's k-means size), 0 without the stream
    pad_to: int = 64  # vocab_size is rounded up to a multiple of this (tensor-core friendly)
    _ids: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.text_size <= 0 or self.n_codebooks <= 0 or self.codebook_size <= 0:
            raise ValueError(f"VocabLayout sizes must be positive, got {self}")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError(f"duplicate special tokens in {self.special_tokens}")
        if self.n_scale_tokens not in (0, 256):
            raise ValueError(f"n_scale_tokens must be 0 or 256, got {self.n_scale_tokens}")
        if self.n_semantic < 0:
            raise ValueError(f"n_semantic must be >= 0, got {self.n_semantic}")
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))
        object.__setattr__(
            self, "_ids", {t: self.text_size + i for i, t in enumerate(self.special_tokens)}
        )

    # ---- ranges -------------------------------------------------------------------------------
    @property
    def special_base(self) -> int:
        return self.text_size

    @property
    def scale_base(self) -> int:
        return self.special_base + len(self.special_tokens) + self.n_spare

    @property
    def semantic_base(self) -> int:
        return self.scale_base + self.n_scale_tokens

    @property
    def audio_base(self) -> int:
        return self.semantic_base + self.n_semantic

    @property
    def rows_per_frame(self) -> int:
        """Ids each frame contributes before serialization: the semantic id (when the layout has
        the stream) and one id per codebook; `patterns` serializes these rows like codebooks."""
        return self.n_codebooks + (1 if self.n_semantic else 0)

    @property
    def audio_end(self) -> int:
        return self.audio_base + self.n_codebooks * self.codebook_size

    @property
    def vocab_size(self) -> int:
        return -(-self.audio_end // self.pad_to) * self.pad_to

    def __len__(self) -> int:
        return self.vocab_size

    # ---- special tokens -----------------------------------------------------------------------
    def id_of(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a special token of this layout") from None

    @property
    def pad_id(self) -> int:
        return self.id_of(PAD)

    @property
    def bos_id(self) -> int:
        return self.id_of(BOS)

    @property
    def eos_id(self) -> int:
        return self.id_of(EOS)

    @property
    def soa_id(self) -> int:
        return self.id_of(SOA)

    @property
    def eoa_id(self) -> int:
        return self.id_of(EOA)

    def require_specials(self, tokens, what: str) -> None:
        """Raise a clear error unless this layout names every one of `tokens` (a tokenizer whose
        layout lacks a task's tokens cannot train or run that task)."""
        missing = [t for t in tokens if t not in self._ids]
        if missing:
            raise LayoutMismatchError(
                f"{what} needs the special token(s) {', '.join(missing)}, which this tokenizer's vocabulary "
                f"layout ({self.hash}) was built without; rebuild the tokenizer with this version of mmtok "
                f"(`mmtok tokenizer build`), then re-shard and train with it"
            )

    def token_of(self, id_: int) -> str:
        """Name of a special id (spare slots are `<reserved_i>`)."""
        i = int(id_) - self.special_base
        if 0 <= i < len(self.special_tokens):
            return self.special_tokens[i]
        if 0 <= i - len(self.special_tokens) < self.n_spare:
            return f"<reserved_{i - len(self.special_tokens)}>"
        raise KeyError(f"id {id_} is not a special id of this layout")

    # ---- audio ids ----------------------------------------------------------------------------
    def audio_ids(self, codes: np.ndarray) -> np.ndarray:
        """[K, T] codes -> [K, T] ids (codebook k of code c is audio_base + k*size + c)."""
        codes = np.asarray(codes, dtype=np.int64)
        k = codes.shape[0]
        if k > self.n_codebooks:
            raise ValueError(f"{k} codebooks given, layout holds {self.n_codebooks}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes out of range [0, {self.codebook_size}): min {codes.min()} max {codes.max()}"
            )
        offsets = self.audio_base + np.arange(k, dtype=np.int64)[:, None] * self.codebook_size
        return codes + offsets

    def codebook_of(self, ids: np.ndarray) -> np.ndarray:
        """Codebook index of each audio id (-1 for non-audio ids)."""
        ids = np.asarray(ids, dtype=np.int64)
        k = (ids - self.audio_base) // self.codebook_size
        return np.where((ids >= self.audio_base) & (ids < self.audio_end), k, -1)

    def semantic_ids(self, ids) -> np.ndarray:
        """(T,) semantic cluster ids -> (T,) vocabulary ids."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.n_semantic:
            raise ValueError("this vocabulary layout has no semantic block (tokenizer built without --semantic)")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_semantic):
            raise ValueError(f"semantic ids out of range [0, {self.n_semantic}): min {ids.min()} max {ids.max()}")
        return ids + self.semantic_base

    def is_semantic(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return (ids >= self.semantic_base) & (ids < self.audio_base)

    def is_scale(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return (ids >= self.scale_base) & (ids < self.semantic_base)

    def row_of(self, ids: np.ndarray) -> np.ndarray:
        """The serialization row of each id (-1 for ids that are neither): with a semantic block
        row 0 is the semantic id and row k+1 codebook k, else row k is codebook k."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.n_semantic:
            return self.codebook_of(ids)
        codebook = self.codebook_of(ids)
        return np.where(self.is_semantic(ids), 0, np.where(codebook >= 0, codebook + 1, -1))

    def code_of(self, ids: np.ndarray) -> np.ndarray:
        """Code value of each audio id (ids must be audio ids)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < self.audio_base or ids.max() >= self.audio_end):
            raise ValueError(f"ids outside the audio range [{self.audio_base}, {self.audio_end})")
        return (ids - self.audio_base) % self.codebook_size

    # ---- modality ---------------------------------------------------------------------------
    def modality_of(self, ids) -> np.ndarray:
        """Modality (see `Modality`) of every id, as int8, same shape as `ids`."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(ids.shape, Modality.INVALID, dtype=np.int8)
        out[(ids >= 0) & (ids < self.text_size)] = Modality.TEXT
        out[(ids >= self.special_base) & (ids < self.scale_base)] = Modality.SPECIAL
        out[(ids >= self.scale_base) & (ids < self.audio_end)] = Modality.AUDIO
        return out

    def check_ids(self, ids, source: str = "ids") -> np.ndarray:
        """Raise a clear error if any id is outside the used part of this vocabulary."""
        ids = np.asarray(ids, dtype=np.int64)
        bad = (ids < 0) | (ids >= self.audio_end)
        if bad.any():
            first = int(ids[bad].flat[0])
            raise LayoutMismatchError(
                f"{source}: {int(bad.sum())} id(s) outside [0, {self.audio_end}) "
                f"(e.g. {first}); they were made with another vocabulary layout "
                f"(this one is {self.hash})"
            )
        return ids

    # ---- identity and storage ---------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_ids")
        if not self.n_semantic:  # without the stream the field is left out, so such a layout's hash does not depend on it
            d.pop("n_semantic")
        d["special_tokens"] = list(self.special_tokens)
        return d

    @property
    def hash(self) -> str:
        """Content hash: equal layouts (same ids for every token) have equal hashes."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> VocabLayout:
        d = dict(d)
        expected = d.pop("hash", None)
        layout = cls(**d)
        if expected is not None and expected != layout.hash:
            raise LayoutMismatchError(f"stored layout hash {expected} != recomputed {layout.hash}")
        return layout

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump({**self.to_dict(), "hash": self.hash}, f, indent=2)

    @classmethod
    def load(cls, path) -> VocabLayout:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def require(self, other_hash: str, source: str) -> None:
        """Raise unless `other_hash` (from a shard, checkpoint, ids file) is this layout's."""
        if other_hash != self.hash:
            raise LayoutMismatchError(
                f"{source} was made with vocabulary layout {other_hash}, "
                f"but this tokenizer's layout is {self.hash}; rebuild it with this tokenizer"
            )
