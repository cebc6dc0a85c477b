"""The audio a codec is fitted on: find the files, read them (capped, resampled, mono), crop them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from mmtok.tokenizer.audio_io import AudioInputError, AudioSource, CodecInput

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}


def find_audio(spec) -> list[Path]:
    """A directory (searched recursively), one audio file, or a manifest (.txt: a path per line;
    .jsonl: objects with "audio"/"path"; relative paths are relative to the manifest)."""
    spec = Path(spec)
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif spec.suffix.lower() in AUDIO_SUFFIXES:
        files = [spec]
    elif spec.is_file():
        files = []
        for n, line in enumerate(spec.read_text().splitlines(), 1):
            if not line.strip():
                continue
            if spec.suffix == ".jsonl":
                row = json.loads(line)
                line = row.get("audio") or row.get("path") or row.get("audio_path")
                if not line:
                    raise ValueError(f"{spec}:{n}: no 'audio' or 'path' field")
            p = Path(line.strip())
            files.append(p if p.is_absolute() else spec.parent / p)
    else:
        raise FileNotFoundError(f"{spec}: no such audio directory, file or manifest")
    if not files:
        raise ValueError(f"{spec}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) found")
    return files


def load_training_audio(files, sample_rate: int, max_seconds: float, seed: int | None = None,
                        skipped: list | None = None) -> list[torch.Tensor]:
    """Mono waveforms at `sample_rate`, at most `max_seconds` in total: whole files, in the
    listing's order, or in a random order drawn from `seed` so that a capped selection spreads
    over the whole listing (a sorted manifest's head is often one kind of music).

    An unreadable file raises, unless a `skipped` list is given: then it is left out and recorded
    there as {"audio", "reason"} (one bad file in a large corpus should not stop a fit)."""
    if seed is not None:
        files = list(files)
        random.Random(seed).shuffle(files)
    out, left = [], int(max_seconds * sample_rate)
    for f in files:
        if left <= 0:
            break
        try:
            with AudioSource(f) as src:
                inp = CodecInput(src, sample_rate, 1)
                wav = inp.read(0, min(inp.n_samples, left))[0]  # (n,)
        except (AudioInputError, OSError) as e:
            if skipped is None:
                raise
            skipped.append({"audio": str(f), "reason": str(e)})
            continue
        out.append(wav)
        left -= wav.numel()
    return out


def random_crops(audio: list[torch.Tensor], n: int, length: int, gen: random.Random) -> torch.Tensor:
    """(n, 1, length) crops, files picked by length; short files are zero-padded."""
    weights = [w.numel() for w in audio]
    batch = torch.zeros(n, 1, length)
    for i, w in enumerate(gen.choices(audio, weights=weights, k=n)):
        s = gen.randint(0, max(0, w.numel() - length))
        crop = w[s : s + length]
        batch[i, 0, : crop.numel()] = crop
    return batch
