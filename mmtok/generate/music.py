"""Text -> music: the training prompt, constrained audio generation, codec decoding.

    wav, sr = generate_music(model, tokenizer, "a slow piano piece in D minor", seconds=5.0)
    write_wav("x.wav", wav, sr)
    codes = generate_codes_batch(model, tokenizer, captions, seconds=5.0)   # AudioCodes, not decoded

The prompt is `mmtok.data.templates.generate_prompt_ids` (`<bos> <task_generate> [instruction]
caption <soa>`), as in training. An `AudioConstraint` forces exactly ceil(seconds * frame_rate)
whole frames in the tokenizer's serialization order, then `<eoa>`, so the ids always decode; the
waveform is trimmed to round(seconds * sample_rate) samples. With per-segment scales
(encodec_48khz) the model writes each 1 s segment's 4 scale bytes (a valid positive float32, see
`AudioConstraint`) and then its frames, the segments of exactly round(seconds * sample_rate) samples. With `generation.cfg_coef` != 1
(MusicGen uses 3) the unconditional twin of each prompt is the audio template's
`<bos> <task_audio> <soa>` (audio with no caption).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mmtok.atomic import atomic_path
from mmtok.data.templates import audio_prompt_ids, frames_that_fit, generate_prompt_ids
from mmtok.generate.captioner import check_model_fits, unwrap
from mmtok.generate.constraints import AudioConstraint
from mmtok.generate.engine import generate
from mmtok.generate.sampling import GenerationConfig
from mmtok.tokenizer.codes import AudioCodes, segment_frame_counts

# Sampling, not argmax: greedy decoding of audio tokens collapses into loops. MusicGen's settings:
# top_k=250, temperature 1, classifier-free guidance 3 (on the demo run, the instrument family a
# linear probe hears in the generated codes matches the caption 0.22 of the time instead of 0.18,
# mean of three seeds; benchmarks/music_adherence.py).
DEFAULT_GENERATION = GenerationConfig(top_k=250, temperature=1.0, cfg_coef=3.0)


@torch.no_grad()
def generate_codes_batch(
    model: torch.nn.Module,
    tokenizer,
    captions: Sequence[str],
    seconds: float,
    generation: GenerationConfig | None = None,
    instruction: str | None = None,
) -> list[AudioCodes]:
    """The codes of ceil(seconds * frame_rate) whole frames per caption (not yet decoded)."""
    model = unwrap(model)
    check_model_fits(model, tokenizer)
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if not captions:
        raise ValueError("no captions to generate music for")
    layout, cfg = tokenizer.layout, tokenizer.config
    segment_frames = None
    if layout.n_scale_tokens:  # encodec_48khz: the segments of exactly that much audio, each with its scale
        segment_frames = segment_frame_counts(round(seconds * tokenizer.sample_rate), cfg.frames_per_segment, cfg.hop)
        n_frames = sum(segment_frames)
    else:
        n_frames = math.ceil(seconds * tokenizer.frame_rate)
    constraint = AudioConstraint(layout, n_codebooks=cfg.n_codebooks, n_frames=n_frames, pattern=cfg.serialization,
                                 segment_frames=segment_frames, semantic_placement=cfg.semantic_placement)
    prompts = [generate_prompt_ids(tokenizer, c, instruction) for c in captions]
    longest = max(map(len, prompts)) + constraint.max_new_tokens
    if longest > model.config.max_seq_len:
        most = frames_that_fit(tokenizer, model.config.max_seq_len - max(map(len, prompts)) + 1)  # <soa> is in the prompt
        raise ValueError(
            f"prompt too long for the context: {seconds:g} s is {n_frames} frames x {layout.rows_per_frame} ids "
            f"= {constraint.max_new_tokens} tokens after a {max(map(len, prompts))}-token prompt, but the model's "
            f"context is {model.config.max_seq_len} tokens (at most {max(most, 0) / tokenizer.frame_rate:.2f} s here)"
        )
    gen = generation or DEFAULT_GENERATION
    gen = replace(gen, max_new_tokens=constraint.max_new_tokens)
    outputs = generate(model, prompts, gen, constraint=constraint, pad_id=layout.pad_id,
                       uncond_prompts=[audio_prompt_ids(tokenizer)] * len(prompts))
    return [tokenizer.ids_to_codes([layout.soa_id, *ids]) for ids in outputs]  # ids end with <eoa>


@torch.no_grad()
def generate_music_batch(
    model: torch.nn.Module,
    tokenizer,
    captions: Sequence[str],
    seconds: float,
    generation: GenerationConfig | None = None,
    instruction: str | None = None,
) -> tuple[list[np.ndarray], int]:
    """One (C, n) float32 waveform of exactly round(seconds * sr) samples per caption, and sr."""
    codes = generate_codes_batch(model, tokenizer, captions, seconds, generation, instruction)
    n_samples = round(seconds * tokenizer.sample_rate)
    wavs = [tokenizer.decode_audio(c)[0][:, :n_samples] for c in codes]
    return wavs, tokenizer.sample_rate


def generate_music(model, tokenizer, caption: str, seconds: float, generation: GenerationConfig | None = None,
                   instruction: str | None = None) -> tuple[np.ndarray, int]:
    """(C, n) float32 waveform of `seconds` of music for `caption`, and its sample rate."""
    wavs, sr = generate_music_batch(model, tokenizer, [caption], seconds, generation, instruction)
    return wavs[0], sr


def write_wav(path, wav: np.ndarray, sample_rate: int) -> Path:
    """(C, n) or (n,) float waveform -> 16-bit PCM file, written aside and renamed into place."""
    data = np.clip(wav.T if wav.ndim == 2 else wav, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sample_rate, subtype="PCM_16")
    return Path(path)
