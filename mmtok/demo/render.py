"""Render symbolic music (music21 scores) to real instrument audio with fluidsynth.

This is the one place that turns notes into sound: the demo corpus and the test fixtures both
call it. fluidsynth always writes stereo PCM16; we downmix to mono float32 here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

# General MIDI soundfonts from Debian packages, most preferred first. Which are present depends on
# what set-up installed; `available_soundfonts()` lists those on this machine.
SOUNDFONT_CANDIDATES = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",  # timgm6mb-soundfont
    "musescore": "/usr/share/sounds/sf3/MuseScore_General.sf3",  # musescore-general-soundfont-small
}


def available_soundfonts() -> dict[str, str]:
    """Soundfonts installed here (name -> path); `MMTOK_SOUNDFONTS=name=path,...` adds more."""
    found = {name: p for name, p in SOUNDFONT_CANDIDATES.items() if os.path.exists(p)}
    for item in filter(None, os.environ.get("MMTOK_SOUNDFONTS", "").split(",")):
        name, _, path = item.partition("=")
        if os.path.exists(path):
            found[name] = path
    return found


def require_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RuntimeError(
            "fluidsynth not found: install it with `apt-get install fluidsynth fluid-soundfont-gm` "
            "(the README's set-up does this)"
        )
    return exe


def set_program(score, program: int):
    """Play every part of a music21 score with one General MIDI program (0-127)."""
    from music21 import instrument

    for part in score.parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        inst = instrument.instrumentFromMidiProgram(program)
        inst.midiProgram = program
        part.insert(0, inst)
    return score


def render_midi(midi_path: str | Path, soundfont: str, sample_rate: int, gain: float = 0.8) -> np.ndarray:
    """MIDI file -> mono float32 waveform at `sample_rate` (fluidsynth, offline, faster than realtime)."""
    import mido

    exe = require_fluidsynth()
    # fluidsynth renders until every voice is silent: a note that never gets its note-off on a
    # looping sample (organ, strings) renders forever (8 GB of output before it was stopped).
    # Real renders run 35-115x realtime, so a generous time limit only ever stops such a runaway.
    limit = 30.0 + 2.0 * mido.MidiFile(str(midi_path)).length
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        try:
            proc = subprocess.run(
                # Dynamic sample loading reads only the samples the MIDI file plays: same audio
                # (checked bit-exact), but FluidR3 loads in 0.12 s instead of 0.32 s per call.
                [exe, "-ni", "-o", "synth.dynamic-sample-loading=1", "-g", str(gain), "-F", wav,
                 "-r", str(sample_rate), soundfont, str(midi_path)],
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"fluidsynth did not finish {midi_path} within {limit:.0f} s "
                               "(a note without note-off?)") from None
        if proc.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"fluidsynth failed on {midi_path}: {proc.stderr.strip()[-500:]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == sample_rate, (sr, sample_rate)
    return audio.mean(axis=1)  # stereo -> mono


def drop_grace_notes(score):
    """Remove zero-length (grace) notes: music21 writes their note-off BEFORE their note-on at the
    same tick, which leaves the note sounding forever in fluidsynth."""
    for n in list(score.recurse().notes):
        if n.duration.quarterLength == 0:
            n.activeSite.remove(n)
    return score


def render_score(score, program: int, soundfont: str, sample_rate: int = 24000) -> np.ndarray:
    """music21 score -> mono float32 waveform played by GM `program` with `soundfont`."""
    with tempfile.TemporaryDirectory() as tmp:
        midi = os.path.join(tmp, "score.mid")
        drop_grace_notes(set_program(score, program)).write("midi", fp=midi)
        return render_midi(midi, soundfont, sample_rate)
