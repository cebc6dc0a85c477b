"""Audio input: read a file or an in-memory waveform as windows at the codec's rate and channels.

Rules every codec input goes through (documented in the README, "Codecs"):
- Channels: a mono codec takes the mean of all input channels; a stereo codec duplicates mono
  input and takes stereo as is; more than 2 channels for a stereo codec is an error.
- Rate: `torchaudio.functional.resample` to the codec rate. Windows are resampled separately
  with a margin and cropped, aligned so each output sample is computed exactly as in a
  whole-file resample (the same filter taps on the same input samples); that is what lets long
  files be read window by window in bounded memory.
- Waveforms: (n,), (channels, n) or (n, channels), told apart by `channels_first_view`'s rule.
- Refused, with the file named: unreadable or truncated files, zero-length audio, NaN/inf
  samples, unsupported channel counts, waveforms whose channel axis cannot be told.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mmtok.tokenizer.loudness import apply_gain

LOWPASS_FILTER_WIDTH = 6  # torchaudio.functional.resample defaults, used to size window margins
ROLLOFF = 0.99


class AudioInputError(ValueError):
    """Audio the tokenizer cannot take; the message names the file (or input) and the problem."""


def _check_riff_truncation(path: Path) -> None:
    """libsndfile silently shortens a WAV whose data chunk is cut off; we refuse it instead."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # not a RIFF/WAVE file: its own decoder reports truncation
        little = head[:4] == b"RIFF"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = f.read(4), f.read(4)
            csize = struct.unpack("<I" if little else ">I", csize)[0]
            if cid == b"data":
                available = size - (pos + 8)
                if csize != 0xFFFFFFFF and csize > available:
                    raise AudioInputError(
                        f"{path}: truncated WAV file (data chunk declares {csize} bytes, "
                        f"only {available} present)"
                    )
                return
            pos += 8 + csize + (csize & 1)
        raise AudioInputError(f"{path}: truncated WAV file (no data chunk)")


MAX_CHANNELS = 8  # a waveform axis this short is a channel axis (7.1 audio has 8 channels)


def channels_first_view(wav: np.ndarray, channels_first: bool | None = None) -> np.ndarray:
    """(n,), (C, n) or (n, C) -> (C, n).

    `channels_first` True or False says which a 2-D array is. None decides by shape: the axis
    of at most MAX_CHANNELS entries is the channel axis when the other one is longer; an array
    whose two axes are both that short, or both longer, is refused (say which it is), never
    guessed. So soundfile.read's (frames, 2) and torch's (2, frames) give the same audio.
    """
    if wav.ndim == 1:
        return wav[None]
    if wav.ndim != 2:
        raise AudioInputError(f"waveform must be (n,), (channels, n) or (n, channels), got shape {wav.shape}")
    if channels_first is None:
        short = [axis <= MAX_CHANNELS for axis in wav.shape]
        if short[0] == short[1]:
            raise AudioInputError(
                f"waveform of shape {wav.shape}: cannot tell the channel axis from the sample axis; "
                "pass channels_first=True for (channels, n) or False for (n, channels)")
        channels_first = short[0]
    return wav if channels_first else wav.T


class AudioSource:
    """Random-access audio, read as float32 (C, n) windows at the source rate.

    Built from a file path (read lazily with soundfile, so a long file is never fully loaded)
    or from an in-memory waveform: (n,) mono, (C, n) channels-first (torch / encodec) or (n, C)
    channels-last (soundfile / librosa); see `channels_first_view` for how the two are told apart.
    """

    def __init__(self, audio, sample_rate: int | None = None, channels_first: bool | None = None):
        self._file = None
        if isinstance(audio, (str, os.PathLike)):
            path = Path(audio)
            self.name = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: audio file not found")
            _check_riff_truncation(path)
            try:
                self._file = sf.SoundFile(str(path))
            except Exception as e:  # libsndfile: unknown format, corrupt header, ...
                raise AudioInputError(f"{path}: unreadable audio file ({e})") from None
            self.sample_rate = self._file.samplerate
            self.channels = self._file.channels
            self.n_frames = self._file.frames
            if sample_rate is not None and sample_rate != self.sample_rate:
                raise AudioInputError(f"{path}: file is {self.sample_rate} Hz, caller said {sample_rate}")
        else:
            self.name = "<waveform>"
            if sample_rate is None:
                raise AudioInputError("a waveform needs its sample_rate")
            wav = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
            self._wav = channels_first_view(wav, channels_first).astype(np.float32, copy=False)
            self.sample_rate = int(sample_rate)
            self.channels, self.n_frames = self._wav.shape
        if self.sample_rate <= 0:
            raise AudioInputError(f"{self.name}: invalid sample rate {self.sample_rate}")
        if self.n_frames == 0 or self.channels == 0:
            raise AudioInputError(f"{self.name}: zero-length audio")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) clipped to the file, as float32 (C, n); NaN/inf is an error."""
        start, stop = max(0, start), min(self.n_frames, stop)
        if self._file is not None:
            try:
                self._file.seek(start)
                wav = self._file.read(stop - start, dtype="float32", always_2d=True).T
            except Exception as e:
                raise AudioInputError(f"{self.name}: cannot decode audio at sample {start} ({e})") from None
            if wav.shape[1] != stop - start:
                raise AudioInputError(
                    f"{self.name}: truncated audio file (expected {self.n_frames} samples, "
                    f"decoding stopped near {start + wav.shape[1]})"
                )
        else:
            wav = self._wav[:, start:stop]
        if not np.isfinite(wav).all():
            bad = int(np.argwhere(~np.isfinite(wav))[0][1]) + start
            raise AudioInputError(
                f"{self.name}: NaN or inf sample at {bad / self.sample_rate:.3f} s (sample {bad})"
            )
        return wav

    def close(self):
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mix_channels(wav: np.ndarray, target_channels: int, name: str) -> np.ndarray:
    """(C, n) -> (target_channels, n) by the documented rules (module docstring)."""
    c = wav.shape[0]
    if c == target_channels:
        return wav
    if target_channels == 1:
        return wav.mean(axis=0, keepdims=True)
    if target_channels == 2 and c == 1:
        return np.repeat(wav, 2, axis=0)
    raise AudioInputError(
        f"{name}: {c} channels not supported by a {target_channels}-channel codec "
        f"(mono and stereo input are; mix it down first)"
    )


class CodecInput:
    """An `AudioSource` seen at the codec's rate and channel count, read in aligned windows.

    `n_samples` is the resampled length (torchaudio's ceil(n * new / orig)); `read(a, b)`
    returns codec-rate samples [a, b) equal to the same slice of a whole-file resample, as
    long as `a` is a multiple of `align` (or the window touches the file's start).
    """

    def __init__(self, source: AudioSource, sample_rate: int, channels: int, gain_db: float = 0.0):
        self.source, self.sample_rate, self.channels = source, sample_rate, channels
        self.gain_db = gain_db  # applied to every read (the loudness rule's gain, see loudness.py)
        g = math.gcd(source.sample_rate, sample_rate)
        self.orig, self.new = source.sample_rate // g, sample_rate // g  # resample ratio, reduced
        self.n_samples = math.ceil(source.n_frames * self.new / self.orig)
        # The sinc kernel reaches `width` source samples either side; read whole blocks beyond it.
        width = math.ceil(LOWPASS_FILTER_WIDTH * self.orig / (min(self.orig, self.new) * ROLLOFF))
        self.margin_blocks = math.ceil(width / self.orig) + 1
        mix_channels(np.zeros((source.channels, 1), np.float32), channels, source.name)  # check early

    @property
    def align(self) -> int:
        """Window starts must be multiples of this (codec-rate samples) for exact resampling."""
        return self.new

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Codec-rate samples [start, stop) clipped to [0, n_samples), as float32 (channels, n),
        with `gain_db` applied."""
        return apply_gain(self._read(start, stop), self.gain_db)

    def _read(self, start: int, stop: int) -> torch.Tensor:
        start, stop = max(0, start), min(self.n_samples, stop)
        if self.orig == self.new:
            wav = self.source.read(start, stop)
            return torch.from_numpy(np.ascontiguousarray(mix_channels(wav, self.channels, self.source.name)))
        import torchaudio.functional as AF

        if start % self.new:
            raise ValueError(f"window start {start} not aligned to {self.new}")
        b0 = start // self.new  # first output block; block i covers source [i*orig, (i+1)*orig)
        b1 = -(-stop // self.new)
        lo = max(0, b0 - self.margin_blocks)
        wav = self.source.read(lo * self.orig, (b1 + self.margin_blocks) * self.orig)
        wav = torch.from_numpy(np.ascontiguousarray(mix_channels(wav, self.channels, self.source.name)))
        out = AF.resample(wav, self.orig, self.new)  # (C, ~ (b1 - lo + margin) * new)
        off = (b0 - lo) * self.new
        return out[:, off : off + (stop - start)].contiguous()
