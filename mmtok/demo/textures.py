"""Textures the music21 corpus lacks, made from its pieces: a melody over an accompaniment.

The corpus is mostly single melodies (folk collections) and vocal polyphony (chorales,
masses, madrigals). Music people caption is mostly something else: a tune over chords, broken
chords and arpeggios, a bass far below the melody. `apply_texture(segment, name, rng)` turns an
excerpt into one of these, played by the same instrument (the clip stays solo: its caption's
instrument is still the whole truth):

    as_written     the excerpt itself
    block_chords   the top line over a chord on every beat
    alberti        the top line over a broken chord (low-high-middle-high eighths)
    arpeggio       the top line over rising sixteenth-note arpeggios
    wide           the top line an octave up over the bass two octaves down and a chord in between
    dense          every part, each doubled an octave below (a thick, dense sound)

The harmony is the excerpt's own where it has several parts (`chordify`), and otherwise a
diatonic triad per half measure chosen to cover the most melody (by duration). Velocities vary
per clip (melody louder than the accompaniment), so clips differ in dynamics as well as level.
"""

from __future__ import annotations

import copy

import numpy as np

TEXTURES = ("as_written", "block_chords", "alberti", "arpeggio", "wide", "dense")
TRIADS = {"major": ("I", "IV", "V", "vi", "ii"), "minor": ("i", "iv", "V", "VI", "III")}


def top_line(segment):
    """The highest part's notes (a chord contributes its top note) as a new Part at offset 0."""
    from music21 import note, stream

    line = stream.Part()
    for n in segment.parts[0].flatten().notes:
        p = n.pitches[-1] if n.isChord else n.pitch
        line.insert(float(n.offset), note.Note(p, quarterLength=float(n.quarterLength)))
    return line


def harmony(segment, span: float) -> list[tuple[float, float, list]]:
    """[(offset, length, pitches low to high)] covering the segment in steps of `span` quarters."""
    from music21 import roman

    end = float(segment.highestTime)
    if len(segment.parts) > 1:  # the piece's own harmony
        chords = segment.chordify().flatten().getElementsByClass("Chord")
        out = [(float(c.offset), float(c.quarterLength), sorted(c.pitches, key=lambda p: p.ps)) for c in chords]
        return [h for h in out if h[1] > 0]
    key = segment.analyze("key")
    melody = [(float(n.offset), float(n.quarterLength), {p.pitchClass for p in n.pitches})
              for n in segment.parts[0].flatten().notes]
    out = []
    for start in np.arange(0.0, end, span):
        stop = min(start + span, end)
        weight: dict[str, float] = {}
        for figure in TRIADS.get(key.mode, TRIADS["major"]):
            pcs = set(roman.RomanNumeral(figure, key).pitchClasses)
            weight[figure] = sum(max(0.0, min(o + d, stop) - max(o, start)) for o, d, ps in melody if ps & pcs)
        best = max(weight, key=weight.get)  # ties: the first listed (tonic, then subdominant, ...)
        out.append((float(start), float(stop - start), list(roman.RomanNumeral(best, key).pitches)))
    return out


def _placed(pitches, octave: int):
    """The chord's pitches moved so that its lowest note sits in `octave` (order kept)."""
    from music21 import pitch

    low = pitches[0]
    shift = 12 * (octave - low.octave) if low.octave is not None else 0
    return [pitch.Pitch(ps=p.ps + shift) for p in pitches]


def accompaniment(name: str, chords, beat: float):
    """The accompaniment Part of texture `name` over `chords` [(offset, length, pitches)].

    Every note gets its own Pitch objects: music21 transposes pitches in place, and a pitch
    shared by two notes would be transposed twice."""
    from music21 import chord, note, stream

    part = stream.Part()
    for start, length, pitches in chords:
        triad = _placed(pitches[-3:] if len(pitches) > 3 else pitches, 3)
        if name == "block_chords":
            t = start
            while t < start + length - 1e-6:
                d = min(beat, start + length - t)
                part.insert(t, chord.Chord(copy.deepcopy(triad), quarterLength=d))
                t += d
        elif name in ("alberti", "arpeggio"):
            step = 0.5 if name == "alberti" else 0.25
            order = [0, 2, 1, 2] if name == "alberti" else list(range(len(triad))) + [len(triad)]
            tones = triad + [triad[0].transpose(12)]
            for i, t in enumerate(np.arange(start, start + length - 1e-6, step)):
                part.insert(float(t), note.Note(copy.deepcopy(tones[order[i % len(order)]]), quarterLength=step))
        elif name == "wide":
            part.insert(start, note.Note(_placed(pitches, 1)[0], quarterLength=length))  # bass, two octaves down
            part.insert(start, chord.Chord(_placed(triad, 3), quarterLength=length))  # fresh pitches
    return part


def apply_texture(segment, name: str, rng: np.random.Generator):
    """A new Score: `segment` in texture `name` (TEXTURES), with velocities drawn from `rng`."""
    from music21 import meter, stream

    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose one of {', '.join(TEXTURES)}")
    melody_velocity = int(rng.integers(60, 121))  # mezzo-piano .. fortissimo
    accompaniment_velocity = max(30, melody_velocity - int(rng.integers(10, 31)))
    if name == "as_written":
        _set_velocity(segment.parts, melody_velocity)
        return segment
    if name == "dense":
        for part in list(segment.parts):
            low = part.transpose(-12)
            segment.insert(0, low)
        _set_velocity(segment.parts, melody_velocity)
        return segment
    sigs = list(segment.recurse().getElementsByClass(meter.TimeSignature))
    beat = float(sigs[0].beatDuration.quarterLength) if sigs else 1.0
    bar = float(sigs[0].barDuration.quarterLength) if sigs else 4.0
    melody = top_line(segment)
    if name == "wide":
        melody = melody.transpose(12)
    accomp = accompaniment(name, harmony(segment, max(beat, bar / 2)), beat)
    _set_velocity([melody], melody_velocity)
    _set_velocity([accomp], accompaniment_velocity)
    out = stream.Score([melody, accomp])
    if sigs:
        melody.insert(0, meter.TimeSignature(sigs[0].ratioString))
    return out


def _set_velocity(parts, velocity: int) -> None:
    for part in parts:
        for n in part.recurse().notes:
            n.volume.velocity = velocity
