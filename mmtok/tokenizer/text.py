"""Text: train and run a SentencePiece model whose ids are the vocabulary's text range.

SentencePiece owns ids [0, text_size) and nothing else: unk is id 0 and SP's own bos/eos/pad are
disabled, because the unified vocabulary defines <pad>/<bos>/<eos>/... right after the SP ids
(see `VocabLayout`). That is how the special ids are reserved at training time: no SP piece can
ever be a special token, and special-token strings in raw text are ordinary text to SP.
`byte_fallback` makes every UTF-8 string encodable (unknown characters become byte pieces).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import sentencepiece as spm

MODEL_TYPES = ("bpe", "unigram")
MIN_VOCAB_SIZE = 300  # 256 byte-fallback pieces + unk + room for a few real pieces


def read_text_files(text_files) -> list[str]:
    """Non-empty lines of every file; a missing, undecodable or empty file is an error naming it."""
    lines: list[str] = []
    for path in map(Path, text_files):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: text file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not valid UTF-8 text ({e})") from None
        file_lines = [ln for ln in text.splitlines() if ln.strip()]
        if not file_lines:
            raise ValueError(f"{path}: text file is empty (no non-blank lines to train on)")
        lines.extend(file_lines)
    if not lines:
        raise ValueError("no text files given to train SentencePiece on")
    return lines


def train_sentencepiece(text_files, model_path, vocab_size: int, model_type: str = "bpe",
                        character_coverage: float = 0.9995, max_sentences: int = 2_000_000) -> Path:
    """Train SentencePiece on `text_files` and write the model to `model_path` (.model).

    `vocab_size` is an upper bound (hard_vocab_limit=False): a small corpus yields fewer pieces
    instead of failing; the layout uses the size actually trained.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size {vocab_size} too small: byte fallback alone needs 257 ids, "
                         f"use at least {MIN_VOCAB_SIZE}")
    lines = read_text_files(text_files)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=True,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,  # the unified vocabulary owns these
        hard_vocab_limit=False,
        character_coverage=character_coverage,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        split_digits=True,
        normalization_rule_name="identity",  # decode(encode(s)) == s for any text
        remove_extra_whitespaces=False,
        num_threads=min(4, os.cpu_count() or 1),
        minloglevel=2,
    )
    model_path = Path(model_path)
    model_path.write_bytes(proto.getvalue())
    return model_path


class TextTokenizer:
    """A loaded SentencePiece model: str <-> ids in [0, size)."""

    def __init__(self, model_path):
        self.model_path = Path(model_path)
        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))

    @property
    def size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])
