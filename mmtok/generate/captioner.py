"""Captioning: audio -> codes -> the training prompt -> text-only generation -> a caption.

    cap = Captioner.from_checkpoint("runs/demo")          # or Captioner(model, tokenizer)
    cap(wav, 44100)                                       # one waveform -> str
    cap.caption_batch(["a.wav", "b.flac"])                # files, waveforms or AudioCodes
    cap.caption_windows("long.wav", window=10.0)          # [(start_s, end_s, caption), ...]

The prompt is `mmtok.data.templates.caption_prompt_ids`, the very builder training used, so a
model trained by train/pretrain.py captions without extra configuration. Generation goes through
the engine with a `TextConstraint`: a caption can only hold text ids, then `<eos>`. With
`generation.cfg_coef` != 1 the captions are guided: the unconditional twin of each prompt is the
text template's `<bos> <task_text>` (a caption with no audio), so guidance pushes each word
towards what the audio makes likelier than the captions' prior does.

How much audio: the first `seconds` of each input (default: as many whole frames as fit the
context next to the longest caption), read from the start of the file only, so a one-hour file
costs no more than a short one. Training cropped long clips the same way (whole frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from mmtok.checkpoint import load_for_inference, resolve_checkpoint
from mmtok.data.tasks import PLAYLIST_SIZE, SECTION_TEXTS, parse_segments
from mmtok.data.templates import (
    caption_prompt_ids,
    crop_codes,
    frames_that_fit,
    ids_besides_audio,
    playlist_prompt_ids,
    section_codes,
    segments_prompt_ids,
    text_prompt_ids,
)
from mmtok.generate.constraints import TextConstraint
from mmtok.generate.engine import generate
from mmtok.generate.sampling import GenerationConfig
from mmtok.tokenizer.audio_io import AudioSource
from mmtok.tokenizer.codes import (
    AudioCodes,
    crop_segments,
    longest_segment_length,
    segment_frame_counts,
    segment_stride,
)
from mmtok.tokenizer.layout import LayoutMismatchError

MIN_PLAYLIST_SECONDS = 0.5  # a playlist whose clips would each get less audio than this is refused


@dataclass
class CaptionConfig:
    seconds: float | None = None  # caption the first N seconds; None = the most that fits the context
    context: int | None = None  # tokens for prompt + caption; None = model.max_seq_len (from_checkpoint:
    #                             the training documents' length, data.seq_len + 1, if shorter)
    instruction: str | None = None  # optional instruction after <task_caption> (training used none half the time)
    batch_size: int = 8  # prompts decoded together (left-padded to one length)
    section_text: str = "joint"  # time-stamped captions: what each section says (SECTION_TEXTS)
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=96, greedy=True)
    )  # decoding: greedy by default, so evaluation is deterministic


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare Transformer under a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if hasattr(model, "module") and hasattr(model.module, "config") else model


def check_model_fits(model, tokenizer) -> None:
    """The model's embedding must hold every id of the tokenizer's layout."""
    vocab = model.config.vocab_size
    if vocab < tokenizer.layout.audio_end:
        raise LayoutMismatchError(
            f"model has {vocab} vocabulary rows but the tokenizer's layout ({tokenizer.layout.hash}) "
            f"uses ids up to {tokenizer.layout.audio_end}: the model was trained with another tokenizer"
        )


def _check_section_text(value: str) -> str:
    if value not in SECTION_TEXTS:
        raise ValueError(f"section_text must be one of {SECTION_TEXTS}, got {value!r}")
    return value


class Captioner:
    def __init__(self, model: torch.nn.Module, tokenizer, config: CaptionConfig | None = None):
        self.model = unwrap(model)
        self.tokenizer = tokenizer
        self.config = config or CaptionConfig()
        self.config.generation.validate()
        _check_section_text(self.config.section_text)
        if self.config.batch_size < 1 or self.config.generation.max_new_tokens < 1:
            raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {self.config.batch_size} "
                             f"and {self.config.generation.max_new_tokens}")
        check_model_fits(self.model, tokenizer)
        self.constraint = TextConstraint(tokenizer.layout)
        self.source = "<in-memory model>"  # what reports name as the model
        self.run_config = None  # the RunConfig, when loaded from a checkpoint

    @classmethod
    def from_checkpoint(cls, path, config: CaptionConfig | None = None, device: str = "cpu") -> Captioner:
        """A run directory (its latest checkpoint) or a step directory."""
        model, run_config, tokenizer = load_for_inference(path, device=device)
        config = config or CaptionConfig()
        if config.context is None:  # positions past the training documents' length were never trained
            config = replace(config, context=min(model.config.max_seq_len, run_config.data.seq_len + 1))
        captioner = cls(model, tokenizer, config)
        captioner.source, captioner.run_config = str(resolve_checkpoint(path)), run_config
        return captioner

    # ---- how much audio fits --------------------------------------------------------------------
    @property
    def context(self) -> int:
        return min(self.config.context or self.model.config.max_seq_len, self.model.config.max_seq_len)

    @property
    def max_new_tokens(self) -> int:
        return self.config.generation.max_new_tokens

    def max_frames(self) -> int:
        """Most audio frames a prompt can hold with room left for a `max_new_tokens` caption."""
        around = ids_besides_audio(self.tokenizer, caption_prompt_ids, self.config.instruction)
        return frames_that_fit(self.tokenizer, self.context - self.max_new_tokens - around)

    def max_seconds(self) -> float:
        return self.max_frames() / self.tokenizer.frame_rate

    def _frames_wanted(self) -> int:
        limit = self.max_frames()
        if limit < 1:
            raise ValueError(
                f"no audio fits: the context is {self.context} tokens and "
                f"max_new_tokens={self.max_new_tokens}; lower max_new_tokens"
            )
        if self.config.seconds is None:
            return limit
        if self.config.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.config.seconds}")
        frames = math.ceil(self.config.seconds * self.tokenizer.frame_rate)
        if frames > limit:
            raise ValueError(
                f"prompt too long for the context: {self.config.seconds:g} s of audio is {frames} frames, but "
                f"a {self.context}-token context with max_new_tokens={self.max_new_tokens} "
                f"holds at most {limit} frames ({self.max_seconds():.2f} s); use --seconds <= that or --windows"
            )
        return frames

    # ---- audio -> codes -------------------------------------------------------------------------
    def encode(self, audio, sample_rate: int | None = None, n_frames: int | None = None) -> AudioCodes:
        """A file path, waveform ((n,) or (C, n) with `sample_rate`) or AudioCodes -> the codes of
        its first `n_frames` frames (default: the frames the config asks for)."""
        n_frames = self._frames_wanted() if n_frames is None else n_frames
        if not isinstance(audio, AudioCodes):
            # Read just the prefix (plus one frame of slack for resampling) at the source rate.
            with AudioSource(audio, sample_rate) as src:
                seconds = (n_frames + 1) / self.tokenizer.frame_rate
                wav = src.read(0, math.ceil(seconds * src.sample_rate))  # (C, n)
                audio = self.tokenizer.encode_audio(wav, src.sample_rate)
        return crop_codes(audio, 0, n_frames, self.tokenizer.config.hop)

    # ---- captions -------------------------------------------------------------------------------
    def prompt_ids(self, codes: AudioCodes) -> list[int]:
        """The training template's captioning prompt for these codes."""
        return caption_prompt_ids(self.tokenizer, self.tokenizer.codes_to_ids(codes), self.config.instruction)

    def generate_ids(self, codes: Sequence[AudioCodes]) -> list[list[int]]:
        """Generated ids per input (text ids, then `<eos>` unless max_new_tokens ran out)."""
        return self.continue_prompts([self.prompt_ids(c) for c in codes])

    @torch.no_grad()
    def continue_prompts(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        """Text ids written after each prompt, in batches of `batch_size` (guided by the text
        template when cfg_coef != 1)."""
        out: list[list[int]] = []
        for i in range(0, len(prompts), self.config.batch_size):
            batch = list(prompts[i : i + self.config.batch_size])
            out += generate(self.model, batch, self.config.generation, constraint=self.constraint,
                            pad_id=self.tokenizer.layout.pad_id,
                            uncond_prompts=[text_prompt_ids(self.tokenizer)] * len(batch))
        return out

    def caption_codes(self, codes: Sequence[AudioCodes]) -> list[str]:
        """Captions of already-encoded audio (cropped by the caller to fit the context)."""
        return self.texts(self.generate_ids(codes))

    def texts(self, outputs: Sequence[Sequence[int]]) -> list[str]:
        """Generated ids -> strings (the closing <eos> dropped)."""
        eos = self.tokenizer.layout.eos_id
        return [self.tokenizer.decode_text([i for i in ids if i != eos]).strip() for ids in outputs]

    def generate_text(self, prompts: Sequence[list[int]]) -> list[str]:
        """Text written after each prompt (`continue_prompts`, decoded)."""
        return self.texts(self.continue_prompts(prompts))

    # ---- time-stamped captions and playlists ----------------------------------------------------
    def timestamps_codes(self, codes: Sequence[AudioCodes],
                         section_text: str | None = None) -> list[tuple[str, list[dict]]]:
        """(stamped caption, its sections [{start_s, end_s, text}]) of already-encoded audio; each
        section's text as `section_text` (default: the config's) says."""
        section_text = _check_section_text(section_text or self.config.section_text)
        tok = self.tokenizer
        texts = self.generate_text([segments_prompt_ids(tok, tok.codes_to_ids(c)) for c in codes])
        sections = [parse_segments(t) for t in texts]
        if section_text == "recaption":
            sections = self.recaption_sections(codes, sections)
        return list(zip(texts, sections))

    def recaption_sections(self, codes: Sequence[AudioCodes], sections: Sequence[Sequence[dict]]) -> list[list[dict]]:
        """`sections` (per input, as stamped) with each text replaced by the caption of the section's
        own audio; a section that holds no audio (stamped past the end) keeps its text."""
        out = [[dict(s) for s in secs] for secs in sections]
        where, crops = [], []
        for i, (c, secs) in enumerate(zip(codes, out)):
            for j, s in enumerate(secs):
                crop = section_codes(c, float(s["start_s"]), float(s["end_s"]), self.tokenizer.config.hop)
                if crop is not None:
                    where.append((i, j))
                    crops.append(crop)
        for (i, j), text in zip(where, self.caption_codes(crops)):
            out[i][j]["text"] = text
        return out

    def caption_timestamps(self, audio, sample_rate: int | None = None) -> list[dict]:
        """The sections of one input as the model stamps them: [{start_s, end_s, text}] (its first
        seconds that fit, as `__call__`). `0:00-0:05 ...` text is parsed by `parse_segments`."""
        return self.timestamps_codes([self.encode(audio, sample_rate)])[0][1]

    def playlist_frames(self, n_clips: int) -> int:
        """Frames each of `n_clips` clips gets in a playlist prompt (the config's seconds, or an equal
        share of the context left beside the caption); a clear error when under MIN_PLAYLIST_SECONDS."""
        lo, hi = PLAYLIST_SIZE
        if not lo <= n_clips <= hi:
            raise ValueError(f"a playlist holds {lo} to {hi} clips, got {n_clips}")
        tok = self.tokenizer
        fixed = len(playlist_prompt_ids(tok, [[tok.layout.soa_id, tok.layout.eoa_id]] * n_clips)) - 2 * n_clips
        share = (self.context - self.max_new_tokens - fixed) // n_clips
        frames = frames_that_fit(tok, share)
        need = math.ceil(MIN_PLAYLIST_SECONDS * tok.frame_rate)
        if frames < need:
            raise ValueError(
                f"playlist over the context budget: {n_clips} clips in a {self.context}-token context with "
                f"max_new_tokens={self.max_new_tokens} leave each clip {frames / tok.frame_rate:.2f} s of audio, "
                f"under the {MIN_PLAYLIST_SECONDS:g} s a clip needs; use fewer clips or lower --max-new-tokens")
        if self.config.seconds is not None:
            wanted = math.ceil(self.config.seconds * tok.frame_rate)
            if wanted > frames:
                raise ValueError(f"prompt too long for the context: {n_clips} clips of {self.config.seconds:g} s "
                                 f"do not fit; each clip can have at most {frames / tok.frame_rate:.2f} s")
            frames = wanted
        return frames

    def playlist_codes(self, playlists: Sequence[Sequence[AudioCodes]]) -> list[str]:
        """One caption per playlist of already-encoded clips."""
        tok = self.tokenizer
        return self.generate_text([playlist_prompt_ids(tok, [tok.codes_to_ids(c) for c in clips])
                                   for clips in playlists])

    def caption_playlist(self, audios: Sequence, sample_rate: int | None = None) -> str:
        """One caption of a set of 2 to 8 inputs (each its first seconds: an equal share of the context)."""
        frames = self.playlist_frames(len(audios))
        return self.playlist_codes([[self.encode(a, sample_rate, frames) for a in audios]])[0]

    def caption_batch(self, audios: Sequence, sample_rate: int | None = None) -> list[str]:
        """Captions of several inputs (paths, waveforms at `sample_rate`, (wav, sr) pairs, AudioCodes)."""
        n_frames = self._frames_wanted()
        codes = []
        for a in audios:
            wav, sr = a if isinstance(a, tuple) else (a, sample_rate)
            codes.append(self.encode(wav, sr, n_frames))
        return self.caption_codes(codes)

    def __call__(self, audio, sample_rate: int | None = None) -> str:
        return self.caption_batch([audio], sample_rate)[0]

    def caption_windows(self, audio, sample_rate: int | None = None, window: float = 10.0,
                        hop: float | None = None) -> list[tuple[float, float, str]]:
        """Caption a long input window by window: [(start_s, end_s, caption), ...].

        The whole input is encoded once and cut into windows on frame boundaries; the last window
        may be shorter. `hop` defaults to `window` (no overlap)."""
        hop = window if hop is None else hop
        if window <= 0 or hop <= 0:
            raise ValueError(f"window and hop must be positive, got {window} and {hop}")
        fr, hop_samples = self.tokenizer.frame_rate, self.tokenizer.config.hop
        win_frames, hop_frames = round(window * fr), max(1, round(hop * fr))
        if win_frames > self.max_frames():
            raise ValueError(f"prompt too long for the context: a {window:g} s window is {win_frames} frames, "
                             f"the context holds {self.max_frames()} ({self.max_seconds():.2f} s)")
        codes = audio if isinstance(audio, AudioCodes) else self.tokenizer.encode_audio(audio, sample_rate)
        if codes.scales is not None:  # windows of whole segments (encodec_48khz), each with its scales
            return self._caption_segment_windows(codes, window, hop)
        starts = range(0, max(1, codes.n_frames - win_frames + hop_frames), hop_frames)
        windows = [crop_codes(codes, s, win_frames, hop_samples) for s in starts]
        captions = self.caption_codes(windows)
        return [(s / fr, min(s + win_frames, codes.n_frames) / fr, c) for s, c in zip(starts, captions)]

    def _caption_segment_windows(self, codes: AudioCodes, window: float, hop: float) -> list[tuple[float, float, str]]:
        """Windows of whole segments (each with its scale) that start on segment boundaries,
        every round(hop / segment stride) segments; the last one may be shorter."""
        cfg, sr = self.tokenizer.config, self.tokenizer.sample_rate
        fps, stride = cfg.frames_per_segment, segment_stride(cfg.frames_per_segment, cfg.hop)
        length = longest_segment_length(round(window * self.tokenizer.frame_rate), fps, cfg.hop)
        per_window = len(segment_frame_counts(length, fps, cfg.hop))
        step = max(1, round(hop * sr / stride))
        n_segments = len(segment_frame_counts(codes.n_samples, fps, cfg.hop))
        chosen = range(0, max(1, n_segments - per_window + step), step)
        windows = [crop_segments(codes, i, length, cfg.hop) for i in chosen]
        captions = self.caption_codes(windows)
        return [(i * stride / sr, (i * stride + w.n_samples) / sr, c) for i, w, c in zip(chosen, windows, captions)]
