"""`MultimodalTokenizer`: text and audio in one vocabulary (see `VocabLayout`).

A tokenizer directory is self-contained and loads in a fresh process:

    spm.model        SentencePiece model (text ids [0, text_size))
    layout.json      the vocabulary layout and its hash
    tokenizer.json   config: codec reference (pretrained id + bandwidth, or `codec/` + sha256),
                     serialization, n_codebooks, codec rates
    codec/           only for fitted codecs: codec.json + model.safetensors, copied with checksum
    semantic/        only with a semantic stream: semantic.json + semantic.safetensors (k-means
                     centres, feature settings), copied with checksum

An audio segment in ids is `<soa> [serialized codes] <eoa>`; for codecs with per-segment scales
(encodec_48khz) each 1 s segment is `4 scale-byte tokens (the float32's IEEE bytes) + its frames`,
so ids -> codes -> waveform equals encodec's own decode exactly. With a semantic stream each frame
is its semantic id, then its codes (one more row under the serialization pattern), or, with
`semantic_placement="prefix"`, all the segment's semantic ids come first (after `<soa>`, before any
scale bytes), then its codes; decoding audio ignores the semantic ids, so the waveform is the same
with or without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmtok.tokenizer.audio_io import AudioSource
from mmtok.tokenizer.codec import FITTED_CONFIG, PRETRAINED, check_not_collapsed, load_codec, sha256_file
from mmtok.tokenizer.codes import SCALE_BYTES, AudioCodes, samples_for_segments, segment_frame_counts, segment_stride
from mmtok.tokenizer.layout import LayoutMismatchError, Modality, VocabLayout
from mmtok.tokenizer.loudness import LoudnessRule
from mmtok.tokenizer.patterns import PartialFrameError, check_pattern, check_semantic_placement, flatten, unflatten
from mmtok.tokenizer.semantic import WEIGHTS_FILE as SEMANTIC_WEIGHTS
from mmtok.tokenizer.semantic import SemanticTokenizer
from mmtok.tokenizer.text import TextTokenizer, train_sentencepiece

TEXT_MODEL, LAYOUT, CONFIG, CODEC_DIR, SEMANTIC_DIR = "spm.model", "layout.json", "tokenizer.json", "codec", "semantic"
FORMAT = "mmtok-tokenizer"
DEFAULT_LOUDNESS = "lufs:-23"  # EBU R128's target; see mmtok/tokenizer/loudness.py


def _loudness_rule(spec: str | LoudnessRule) -> LoudnessRule:
    return spec if isinstance(spec, LoudnessRule) else LoudnessRule.parse(spec)


@dataclass
class TokenizerConfig:
    codec: str  # codec id: encodec_24khz / encodec_48khz, or a fitted codec's name@sha256[:12]
    bandwidth: float  # kbps the codec runs at (sets its number of codebooks)
    n_codebooks: int  # first k codebooks kept in ids (<= the codec's at this bandwidth)
    serialization: str = "frame_major"  # how [K, T] codes become one stream (patterns.PATTERNS)
    codec_path: str | None = None  # "codec" when the fitted codec's weights are in the directory
    codec_sha256: str | None = None  # sha256 of the copied fitted weights
    sample_rate: int = 0  # codec sample rate (Hz)
    channels: int = 1  # codec channels
    frame_rate: float = 0.0  # codec frames per second
    hop: int = 0  # samples per frame
    frames_per_segment: int | None = None  # scaled segment length in frames (encodec_48khz), else None
    chunk_seconds: float = 8.0  # longer audio is encoded in windows of this length...
    context_seconds: float = 2.0  # ...with this much context each side (frames discarded)...
    batch_seconds: float = 10.0  # ...equal-length windows batched up to this much audio (bounds memory;
    # 10 s = one window: batching measured slower on the 2-core CPU; see Codec.encode)
    loudness: dict = field(default_factory=dict)  # the LoudnessRule every input is brought to ({}: none)
    semantic_path: str | None = None  # "semantic" when the tokenizer has a semantic stream, else None
    semantic_sha256: str | None = None  # sha256 of the copied semantic.safetensors
    semantic_placement: str = "frame"  # "frame": each frame's semantic id beside its codes; "prefix":
    #   all of a segment's semantic ids before its codes (AudioLM's order; what `build` writes by default).
    #   "frame" here reads directories written before the field existed; patterns.SEMANTIC_PLACEMENTS
    layout_hash: str = ""  # hash of layout.json (checked on load)


@dataclass
class Segment:
    """One piece of an interleaved sequence: text, or one <soa>..<eoa> audio segment."""

    modality: Modality  # TEXT or AUDIO (specials between segments are not segments)
    start: int  # span in the ids, [start, stop); audio spans include <soa> and <eoa>
    stop: int
    text: str | None = None
    codes: AudioCodes | None = None


@dataclass
class Interleaved:
    ids: np.ndarray  # (L,) int64
    modality: np.ndarray  # (L,) int8, `Modality` of each id
    spans: list[Segment] = field(default_factory=list)  # one per input segment, in order


def _atomic_dir(out: Path, overwrite: bool):
    """Temp directory beside `out`; `commit(tmp)` renames it into place (old one removed last)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    def commit():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)

    return tmp, commit


class MultimodalTokenizer:
    def __init__(self, text: TextTokenizer, layout: VocabLayout, config: TokenizerConfig,
                 codec_dir: Path | None = None, repository=None, semantic: SemanticTokenizer | None = None):
        if text.size != layout.text_size:
            raise LayoutMismatchError(f"SentencePiece model has {text.size} pieces, layout says {layout.text_size}")
        if (semantic.n_clusters if semantic is not None else 0) != layout.n_semantic:
            raise LayoutMismatchError(f"semantic stream of {semantic.n_clusters if semantic else 0} clusters, "
                                      f"layout says {layout.n_semantic}")
        self.text, self.layout, self.config = text, layout, config
        self.codec_dir = codec_dir  # fitted codec directory (inside the tokenizer dir), else None
        self.repository = repository  # local encodec checkpoint dir for pretrained codecs
        self.semantic = semantic  # the semantic stream's tokenizer, or None
        self._codec = None
        self._special_ids = {t: layout.id_of(t) for t in layout.special_tokens}

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def build(cls, text_files, codec: str, out, bandwidth: float | None = None, vocab_size: int = 8000,
              model_type: str = "bpe", serialization: str = "frame_major", n_codebooks: int | None = None,
              repository=None, overwrite: bool = False, loudness: str | LoudnessRule = DEFAULT_LOUDNESS,
              semantic: SemanticTokenizer | str | os.PathLike | None = None,
              semantic_placement: str = "prefix") -> MultimodalTokenizer:
        """Train SentencePiece, attach a codec, write a self-contained directory atomically.

        loudness: the rule inputs are brought to before encoding (`LoudnessRule` or "lufs:-23",
        "rms:-20", "none"); codecs that scale each segment themselves (encodec_48khz) take none.
        semantic: a fitted `SemanticTokenizer` (or its saved directory) whose ids join every audio
        frame (see tokenizer/semantic.py); None: codes only.
        semantic_placement: "prefix" (a segment's ids before its codes; measured the better of the
        two, docs/results.md) or "frame" (the id beside each frame's codes); tokenizer/patterns.py."""
        check_pattern(serialization)
        check_semantic_placement(semantic_placement)
        if semantic is not None and not isinstance(semantic, SemanticTokenizer):
            semantic = SemanticTokenizer.load(semantic)
        if semantic is not None and semantic.centres is None:
            raise ValueError("the semantic tokenizer is not fitted (call fit() first)")
        tmp, commit = _atomic_dir(Path(out), overwrite)
        try:
            train_sentencepiece(text_files, tmp / TEXT_MODEL, vocab_size, model_type)
            c = load_codec(codec, bandwidth, repository)  # a fitted codec is checked as it loads
            if c.id in PRETRAINED:
                check_not_collapsed(c, source=str(codec))
            k = n_codebooks or c.n_codebooks
            if not 0 < k <= c.n_codebooks:
                raise ValueError(f"n_codebooks={k}: codec {c.id} has {c.n_codebooks} at {c.bandwidth} kbps")
            config = TokenizerConfig(
                codec=c.id, bandwidth=c.bandwidth, n_codebooks=k, serialization=serialization,
                sample_rate=c.sample_rate, channels=c.channels, frame_rate=c.frame_rate, hop=c.hop,
                frames_per_segment=c.frames_per_segment,
                loudness={} if c.has_scales else asdict(_loudness_rule(loudness)))
            codec_dir = None
            if c.id not in PRETRAINED:  # fitted: copy the weights in
                codec_dir = tmp / CODEC_DIR
                codec_dir.mkdir()
                src = json.loads((Path(codec) / FITTED_CONFIG).read_text())
                for name in (FITTED_CONFIG, src["weights"]):
                    shutil.copy2(Path(codec) / name, codec_dir / name)
                config.codec_path, config.codec_sha256 = CODEC_DIR, sha256_file(codec_dir / src["weights"])
            if semantic is not None:
                semantic.save(tmp / SEMANTIC_DIR)
                config.semantic_path = SEMANTIC_DIR
                config.semantic_sha256 = sha256_file(tmp / SEMANTIC_DIR / SEMANTIC_WEIGHTS)
                config.semantic_placement = semantic_placement
            text = TextTokenizer(tmp / TEXT_MODEL)
            layout = VocabLayout(text_size=text.size, n_codebooks=k, codebook_size=c.codebook_size,
                                 n_scale_tokens=256 if c.has_scales else 0,
                                 n_semantic=semantic.n_clusters if semantic is not None else 0)
            cls(text, layout, config, codec_dir, repository, semantic)._write(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        commit()
        return cls.from_pretrained(out, repository=repository)

    def _write(self, d: Path) -> None:
        self.config.layout_hash = self.layout.hash
        self.layout.save(d / LAYOUT)
        (d / CONFIG).write_text(json.dumps({"format": FORMAT, "version": 1, **asdict(self.config)}, indent=2))

    def save_pretrained(self, out, overwrite: bool = True) -> None:
        """Write this tokenizer to `out` (atomically: temp dir beside it, then rename)."""
        tmp, commit = _atomic_dir(Path(out), overwrite)
        try:
            (tmp / TEXT_MODEL).write_bytes(self.text.sp.serialized_model_proto())
            if self.codec_dir is not None:
                shutil.copytree(self.codec_dir, tmp / CODEC_DIR)
            if self.semantic is not None:
                self.semantic.save(tmp / SEMANTIC_DIR)
                self.config.semantic_path = SEMANTIC_DIR
                self.config.semantic_sha256 = sha256_file(tmp / SEMANTIC_DIR / SEMANTIC_WEIGHTS)
            self._write(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        commit()

    @classmethod
    def from_pretrained(cls, path, repository=None, semantic_features=None) -> MultimodalTokenizer:
        """Load a tokenizer directory; the layout hash and the fitted-codec and semantic checksums
        are verified. `semantic_features`: the feature extractor of a semantic stream whose
        settings do not rebuild it (e.g. an unnamed `transformers` model, `HFLayerFeatures`)."""
        path = Path(path)
        for name in (TEXT_MODEL, LAYOUT, CONFIG):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path}: not a tokenizer directory (missing {name})")
        raw = json.loads((path / CONFIG).read_text())
        if raw.pop("format", None) != FORMAT:
            raise ValueError(f"{path / CONFIG}: not an mmtok tokenizer config")
        raw.pop("version", None)
        config = TokenizerConfig(**raw)
        check_semantic_placement(config.semantic_placement)
        layout = VocabLayout.load(path / LAYOUT)
        layout.require(config.layout_hash, f"{path / CONFIG}")
        codec_dir = None
        if config.codec_path:
            codec_dir = path / config.codec_path
            weights = json.loads((codec_dir / "codec.json").read_text())["weights"]
            digest = sha256_file(codec_dir / weights)
            if digest != config.codec_sha256:
                raise ValueError(f"{codec_dir / weights}: checksum {digest[:12]} != recorded "
                                 f"{config.codec_sha256[:12]} (corrupt or replaced codec weights)")
        semantic = None
        if config.semantic_path:
            weights = path / config.semantic_path / SEMANTIC_WEIGHTS
            if not weights.is_file():
                raise FileNotFoundError(f"{path}: tokenizer.json names a semantic stream but {weights} is missing")
            digest = sha256_file(weights)
            if digest != config.semantic_sha256:
                raise ValueError(f"{weights}: checksum {digest[:12]} != recorded {config.semantic_sha256[:12]} "
                                 "(corrupt or replaced semantic tokenizer)")
            semantic = SemanticTokenizer.load(path / config.semantic_path, features=semantic_features)
        return cls(TextTokenizer(path / TEXT_MODEL), layout, config, codec_dir, repository, semantic)

    # ---- sizes ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.layout.vocab_size

    @property
    def codec(self):
        """The codec, loaded on first audio use (text-only users never load a model)."""
        if self._codec is None:
            spec = str(self.codec_dir) if self.codec_dir is not None else self.config.codec
            self._codec = load_codec(spec, self.config.bandwidth, self.repository)
            if self._codec.id != self.config.codec:
                raise ValueError(f"codec {self._codec.id} loaded, tokenizer was built with {self.config.codec}")
        return self._codec

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def audio_tokens_per_second(self) -> float:
        """Audio ids per second of (long) audio: frame rate x ids per frame (codebooks, + 1 with a
        semantic stream); with per-segment scales (encodec_48khz) each segment's SCALE_BYTES +
        frames x ids per frame per segment stride (0.99 s: segments overlap by 1%)."""
        cfg, rows = self.config, self.layout.rows_per_frame
        if not self.layout.n_scale_tokens:
            return cfg.frame_rate * rows
        stride_s = segment_stride(cfg.frames_per_segment, cfg.hop) / cfg.sample_rate
        return (SCALE_BYTES + cfg.frames_per_segment * rows) / stride_s

    def modality_of(self, ids) -> np.ndarray:
        return self.layout.modality_of(ids)

    # ---- text -----------------------------------------------------------------------------------
    def encode_text(self, text: str, allow_special: bool = False) -> list[int]:
        """Text -> ids. Special-token strings ("<soa>", ...) are plain text unless `allow_special`,
        which maps them to their ids (like HF's split_special_tokens=False)."""
        if not allow_special:
            return self.text.encode(text)
        ids: list[int] = []
        for piece, is_special in self._split_special(text):
            ids += [self._special_ids[piece]] if is_special else self.text.encode(piece)
        return ids

    def _split_special(self, text: str):
        pattern = "(" + "|".join(re.escape(t) for t in sorted(self._special_ids, key=len, reverse=True)) + ")"
        for i, piece in enumerate(re.split(pattern, text)):
            if piece:
                yield piece, i % 2 == 1

    def decode_text(self, ids, keep_special: bool = False) -> str:
        """Text ids -> str. Special ids are dropped (or written as their strings with
        `keep_special`); audio ids are an error (use decode_interleaved for mixed ids)."""
        ids = self.layout.check_ids(ids).reshape(-1)
        mod = self.layout.modality_of(ids)
        if (mod == Modality.AUDIO).any():
            raise ValueError("decode_text got audio ids; use decode_interleaved for mixed sequences")
        out, run = [], []
        for i, m in zip(ids.tolist(), mod.tolist()):
            if m == Modality.TEXT:
                run.append(i)
                continue
            out.append(self.text.decode(run))
            run = []
            if keep_special:
                out.append(self.layout.token_of(i))
        out.append(self.text.decode(run))
        return "".join(out)

    # ---- audio ----------------------------------------------------------------------------------
    @property
    def loudness(self) -> LoudnessRule:
        """The loudness rule inputs are brought to before encoding (tokenizer.json's `loudness`)."""
        return LoudnessRule(**self.config.loudness)

    def encode_audio(self, audio, sample_rate: int | None = None, normalize: bool = True,
                     channels_first: bool | None = None) -> AudioCodes:
        """File path or waveform ((n,), (C, n) or (n, C), with `sample_rate`) -> AudioCodes with
        this tokenizer's n_codebooks; resampling and channel mixing follow audio_io's rules, then the
        loudness rule scales the input (`normalize=False`: the codec's codes of the audio as it is).
        `channels_first`: which a 2-D waveform is (None: told by its shape, audio_io.channels_first_view).
        With a semantic stream the codes carry each frame's semantic id (`AudioCodes.semantic`),
        made from the same audio (its features are level-invariant: no loudness rule needed)."""
        cfg = self.config
        if not isinstance(audio, (str, os.PathLike, AudioSource)):
            audio = AudioSource(audio, sample_rate, channels_first)
        codes = self.codec.encode(audio, sample_rate, cfg.chunk_seconds, cfg.context_seconds, cfg.batch_seconds,
                                  loudness=self.loudness if normalize else None)
        codes.codes = codes.codes[: self.config.n_codebooks]
        if self.semantic is not None:
            if isinstance(audio, AudioSource):  # a waveform: the semantic features read it whole
                wav, sr = audio.read(0, audio.n_frames), audio.sample_rate
            else:
                wav, sr = audio, None
            codes.semantic = self.semantic.encode(wav, sr, n_frames=codes.n_frames).numpy()
        return codes

    def codes_to_ids(self, codes: AudioCodes) -> list[int]:
        """AudioCodes -> `<soa> [serialized codes] <eoa>` ids."""
        if codes.codec != self.config.codec:
            raise ValueError(f"codes from codec {codes.codec}; this tokenizer uses {self.config.codec}")
        k = self.config.n_codebooks
        if codes.n_codebooks < k:
            raise ValueError(f"codes have {codes.n_codebooks} codebooks, tokenizer needs {k}")
        ids = self.layout.audio_ids(codes.codes[:k])  # (k, T)
        parts = [np.array([self.layout.soa_id])]
        if self.layout.n_semantic:
            if codes.semantic is None:
                raise ValueError("this tokenizer has a semantic stream and the codes carry no semantic ids "
                                 "(encode the audio with this tokenizer, or re-shard with it)")
            semantic = self.layout.semantic_ids(codes.semantic)  # (T,)
            if semantic.shape != (codes.n_frames,):
                raise ValueError(f"{semantic.size} semantic ids for {codes.n_frames} frames")
            if self.config.semantic_placement == "prefix":  # the whole plan first, then the codes
                parts.append(semantic)
            else:  # row 0: each frame's semantic id, serialized like a codebook
                ids = np.concatenate([semantic[None], ids])  # (1 + k, T)
        if self.layout.n_scale_tokens:
            if codes.scales is None:
                raise ValueError(f"codec {codes.codec} needs per-segment scales; codes have none")
            counts = segment_frame_counts(codes.n_samples, self.config.frames_per_segment, self.config.hop)
            if sum(counts) != codes.n_frames or len(counts) != len(codes.scales):
                raise ValueError(f"{codes.n_frames} frames / {len(codes.scales)} scales inconsistent "
                                 f"with {codes.n_samples} samples")
            t0 = 0
            for scale, n in zip(codes.scales, counts):
                raw = np.frombuffer(struct.pack("<f", float(scale)), dtype=np.uint8)
                parts += [self.layout.scale_base + raw.astype(np.int64),
                          flatten(ids[:, t0 : t0 + n], self.config.serialization)]
                t0 += n
        else:
            parts.append(flatten(ids, self.config.serialization))
        parts.append(np.array([self.layout.eoa_id]))
        return np.concatenate(parts).astype(np.int64).tolist()

    def ids_to_codes(self, ids, source: str = "audio ids") -> AudioCodes:
        """`<soa> ... <eoa>` (or the bare audio tokens) -> AudioCodes; exact inverse of codes_to_ids.

        n_samples is the longest length consistent with the frames (ids carry no sample count):
        frames * hop for plain codecs, the segment layout's length for scaled ones."""
        ids = self.layout.check_ids(ids, source).reshape(-1)
        if ids.size and ids[0] == self.layout.soa_id:
            if ids[-1] != self.layout.eoa_id:
                raise PartialFrameError(f"{source}: <soa> without a closing <eoa> (truncated audio segment)")
            ids = ids[1:-1]
        mod = self.layout.modality_of(ids)
        if (mod != Modality.AUDIO).any():
            bad = int(ids[mod != Modality.AUDIO][0])
            raise ValueError(f"{source}: non-audio id {bad} inside an audio segment")
        pattern, hop = self.config.serialization, self.config.hop
        rows, lay, first_row, prefix = self.layout.rows_per_frame, self.layout, 0, None
        if lay.n_semantic and self.config.semantic_placement == "prefix":
            n = int(np.argmin(lay.is_semantic(ids))) if not lay.is_semantic(ids).all() else ids.size
            prefix, ids = ids[:n] - lay.semantic_base, ids[n:]
            if lay.is_semantic(ids).any():
                raise PartialFrameError(f"{source}: a semantic id at audio token {n + int(np.argmax(lay.is_semantic(ids)))}"
                                        f", after the codes began (this tokenizer puts a segment's semantic ids first)")
            rows, first_row = lay.n_codebooks, 1
        if not lay.n_scale_tokens:
            codes, semantic = self._split_rows(unflatten(ids, rows, pattern, lay, source, first_row), prefix, source)
            return AudioCodes(codes, codes.shape[1] * hop, self.sample_rate, self.config.codec, semantic=semantic)
        is_scale = lay.is_scale(ids)
        starts = np.flatnonzero(is_scale & ~np.concatenate([[False], is_scale[:-1]]))
        if ids.size and (not starts.size or starts[0] != 0):
            raise PartialFrameError(f"{source}: audio tokens before the first segment's scale")
        scales, blocks, counts = [], [], []
        for s, e in zip(starts, list(starts[1:]) + [ids.size]):
            head, body = ids[s : s + SCALE_BYTES], ids[s + SCALE_BYTES : e]
            if head.size < SCALE_BYTES or not lay.is_scale(head).all() or lay.is_scale(body).any():
                raise PartialFrameError(f"{source}: segment at token {s} does not start with {SCALE_BYTES} scale tokens")
            scales.append(np.frombuffer((head - lay.scale_base).astype(np.uint8).tobytes(), "<f4")[0])
            block = unflatten(body, rows, pattern, lay, source, first_row)
            blocks.append(block)
            counts.append(block.shape[1])
        codes, semantic = self._split_rows(np.concatenate(blocks, axis=1) if blocks else np.zeros((rows, 0), np.int64),
                                           prefix, source)
        try:
            n = samples_for_segments(counts, self.config.frames_per_segment, hop)
        except ValueError as e:
            raise PartialFrameError(f"{source}: {e}") from None
        return AudioCodes(codes, n, self.sample_rate, self.config.codec, np.array(scales, np.float32),
                          self.config.frames_per_segment, semantic=semantic)

    def _split_rows(self, rows: np.ndarray, prefix: np.ndarray | None,
                    source: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(R, T) parsed ids (+ the (T,) semantic cluster ids read as a prefix) -> ((K, T) codes,
        (T,) semantic cluster ids or None)."""
        if prefix is not None:
            if prefix.size != rows.shape[1]:
                raise PartialFrameError(f"{source}: {prefix.size} semantic ids before {rows.shape[1]} frames of codes "
                                        "(a truncated or partial segment)")
            return self.layout.code_of(rows), prefix
        if not self.layout.n_semantic:
            return self.layout.code_of(rows), None
        return self.layout.code_of(rows[1:]), rows[0] - self.layout.semantic_base

    def decode_audio(self, ids_or_codes) -> tuple[np.ndarray, int]:
        """Audio ids (`<soa>..<eoa>`) or AudioCodes -> (waveform (C, n) float32, sample_rate)."""
        codes = ids_or_codes if isinstance(ids_or_codes, AudioCodes) else self.ids_to_codes(ids_or_codes)
        return self.codec.decode(codes).numpy(), self.codec.sample_rate

    # ---- interleaved ----------------------------------------------------------------------------
    def encode_interleaved(self, segments, bos: bool = False, eos: bool = False) -> Interleaved:
        """Text (str) and audio (AudioCodes, pathlib.Path, or (wav, sample_rate)) segments ->
        ids, per-id modality and one span per segment. Audio spans include <soa>/<eoa>."""
        ids: list[int] = [self.layout.bos_id] if bos else []
        spans = []
        for seg in segments:
            start = len(ids)
            if isinstance(seg, str):
                ids += self.encode_text(seg)
                spans.append(Segment(Modality.TEXT, start, len(ids), text=seg))
                continue
            if isinstance(seg, (os.PathLike, tuple)):
                seg = self.encode_audio(*seg) if isinstance(seg, tuple) else self.encode_audio(seg)
            if not isinstance(seg, AudioCodes):
                raise TypeError(f"segment must be str, AudioCodes, Path or (wav, sr), got {type(seg).__name__}")
            ids += self.codes_to_ids(seg)
            spans.append(Segment(Modality.AUDIO, start, len(ids), codes=seg))
        if eos:
            ids.append(self.layout.eos_id)
        arr = np.asarray(ids, dtype=np.int64)
        return Interleaved(arr, self.layout.modality_of(arr), spans)

    def decode_interleaved(self, ids, source: str = "ids") -> list[Segment]:
        """Ids -> text and audio segments (specials outside audio are dropped). Audio segments
        carry their codes; `decode_audio(seg.codes)` turns them into waveforms."""
        ids = self.layout.check_ids(ids, source).reshape(-1)
        mod = self.layout.modality_of(ids)
        out: list[Segment] = []
        i, n = 0, ids.size
        while i < n:
            if ids[i] == self.layout.soa_id:
                stop = np.flatnonzero(ids[i:] == self.layout.eoa_id)
                if not stop.size:
                    raise PartialFrameError(f"{source}: <soa> at {i} never closed by <eoa>")
                j = i + int(stop[0]) + 1
                out.append(Segment(Modality.AUDIO, i, j, codes=self.ids_to_codes(ids[i:j], f"{source}[{i}:{j}]")))
                i = j
            elif mod[i] == Modality.TEXT:
                j = i
                while j < n and mod[j] == Modality.TEXT:
                    j += 1
                out.append(Segment(Modality.TEXT, i, j, text=self.text.decode(ids[i:j])))
                i = j
            elif mod[i] == Modality.AUDIO:
                raise ValueError(f"{source}: audio id {int(ids[i])} at {i} outside <soa>..<eoa>")
            else:
                i += 1
        return out
