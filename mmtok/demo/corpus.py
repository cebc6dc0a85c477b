"""The demo corpus: real compositions from the music21 corpus, rendered into captioned clips.

    plan (main process, cheap, deterministic from the seed)
      pick pieces per collection -> split the training collections' pieces train/valid/test BY
      PIECE; the held-out collections' pieces are the out-of-distribution split (`ood`) -> per
      clip: GM program, soundfont, tempo (BPM), transposition, where in the piece to start,
      texture (textures.py: the excerpt, or its melody over chords, broken chords, arpeggios...)
      and level (dBFS RMS; every `ood` clip at each of OOD_LEVELS)
    render (worker processes, one task per piece so a score is parsed once)
      excerpt enough measures for `clip_seconds` at the chosen tempo -> texture -> replace every
      tempo mark with one MetronomeMark (a real tempo change) -> transpose -> key/mode by
      `analyze('key')` -> GM program on every part -> fluidsynth -> crop to `clip_seconds` ->
      scale to each level -> FLAC + facts JSON
    write
      train/valid/test/ood.jsonl manifests (facts + a caption from `captions.describe`), captions.txt

Resumable: a clip whose FLAC and facts JSON both exist is not rendered again (each is written
aside and renamed). Pieces that cannot be used (no measures, no time signature, silence) are
recorded in `skipped.jsonl`, never dropped silently.
"""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.data.manifest import write_jsonl
from mmtok.data.templates import instruction_texts
from mmtok.demo.captions import (
    GM_INSTRUMENTS,
    TEMPO_BINS,
    TEMPO_CLASSES,
    TEMPO_RANGE,
    describe,
    family_of,
    normalize_key,
    tempo_class,
)
from mmtok.demo.render import available_soundfonts, render_score
from mmtok.demo.textures import TEXTURES, apply_texture


@dataclass(frozen=True)
class Collection:
    name: str  # shown in captions when no composer is known ("Essen folk song collection")
    kind: str  # chorale / folk / renaissance / classical: picks the caption's word for the music
    dirs: tuple[str, ...]  # music21 corpus sub-directories it is read from
    composer: str | None  # composer of every piece, if one; else from the score's metadata
    weight: float  # share of the corpus's pieces (of the training pieces, or of the held-out ones)
    held_out: bool = False  # never trained on: its pieces make the out-of-distribution split


COLLECTIONS = (
    Collection("Bach chorales", "chorale", ("bach",), "J. S. Bach", 0.25),
    Collection("Essen folk song collection", "folk", ("essenFolksong",), None, 0.20),
    Collection("O'Neill's Music of Ireland", "folk", ("oneills1850",), None, 0.15),
    Collection("Palestrina masses", "renaissance", ("palestrina",), "Palestrina", 0.15),
    Collection("classical works", "classical", ("mozart", "haydn", "beethoven", "chopin", "handel", "corelli",
               "cpebach", "schubert"), None, 0.25),
    # Held out of training: whole collections and composers, for the out-of-distribution test.
    Collection("Ryan's Mammoth Collection", "folk", ("ryansMammoth",), None, 0.45, held_out=True),
    Collection("Monteverdi madrigals", "renaissance", ("monteverdi",), "Monteverdi", 0.40, held_out=True),
    Collection("Schumann piano works", "classical", ("schumann_robert", "schumann_clara"), None, 0.15,
               held_out=True),
)  # fmt: skip
_COMPOSERS = {"mozart": "Mozart", "haydn": "Haydn", "beethoven": "Beethoven", "handel": "Handel",
              "schumann_robert": "Robert Schumann", "schumann_clara": "Clara Schumann",
              "chopin": "Chopin", "corelli": "Corelli", "cpebach": "C. P. E. Bach",
              "schubert": "Schubert"}  # fmt: skip
MAX_SCORE_BYTES = 400_000  # larger files (whole quartets) take seconds to parse; skipped
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


@dataclass(frozen=True)
class CorpusSize:
    n_pieces: int  # distinct pieces (the unit of the train/valid/test split)
    clips_per_piece: int  # clips rendered from each piece (different instrument/tempo/key/excerpt/texture)
    ood_pieces: int = 0  # pieces of the held-out collections (OOD_CLIPS_PER_PIECE clips, each at OOD_LEVELS)


SIZES = {
    "smoke": CorpusSize(24, 3, 4),  # 72 clips + 24 out-of-distribution, ~2 min on 2 cores
    "default": CorpusSize(360, 8, 60),  # 2,880 clips + 360 out-of-distribution (the CPU demo's corpus; 4 clips
    #   per piece -> 8 lifted the demo's family accuracy 0.44 -> 0.48 and cut its overfitting)
    "large": CorpusSize(6000, 6, 600),  # 36,000 clips, hours
}
OOD_CLIPS_PER_PIECE = 2
OOD_LEVELS = (-30.0, -20.0, -10.0)  # dBFS RMS: each out-of-distribution clip is written at all three
TRAIN_LEVELS = (-35.0, -10.0)  # dBFS RMS: each clip of the other splits at one level drawn from this range
PEAK_LIMIT = 0.99  # PCM16 would clip above: a clip whose peak would pass it is scaled down to it
CORPUS_VERSION = 2  # bumped when the same size and seed would make a different corpus (stage fingerprints)


def corpus_size(name: str = "default", pieces: int | None = None, clips_per_piece: int | None = None,
                ood_pieces: int | None = None) -> CorpusSize:
    """A named size, with any of its numbers replaced (`--pieces`, `--clips-per-piece`, `--ood-pieces`)."""
    if name not in SIZES:
        raise ValueError(f"unknown corpus size {name!r}: choose one of {', '.join(SIZES)}")
    for flag, value in (("pieces", pieces), ("clips_per_piece", clips_per_piece)):
        if value is not None and value < 1:
            raise ValueError(f"corpus {flag} must be >= 1, got {value}")
    if ood_pieces is not None and ood_pieces < 0:
        raise ValueError(f"corpus ood_pieces must be >= 0, got {ood_pieces}")
    base = SIZES[name]
    return CorpusSize(pieces or base.n_pieces, clips_per_piece or base.clips_per_piece,
                      base.ood_pieces if ood_pieces is None else ood_pieces)


# Wordings of each clip's caption (`text` + references). Training draws one each time it uses a
# clip: with crop augmentation, 4 instead of 1 lifted the demo's family accuracy 0.69-0.74 -> 0.76-0.78.
CAPTIONS_PER_CLIP = 4
SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}  # fractions of the training collections' pieces
OOD = "ood"  # the split of the held-out collections' pieces
TRANSPOSE_RANGE = (-5, 6)  # semitones, inclusive
MIN_RMS = 1e-3  # an excerpt quieter than this (rests only) is replaced by another excerpt


@dataclass(frozen=True)
class ClipSpec:
    clip_id: str  # file stem, unique, stable across runs with the same seed
    split: str
    piece: str  # corpus path relative to the corpus root, "#<n>" for a tune in an abc collection
    collection: str
    kind: str
    composer: str | None
    program: int  # GM program (see captions.GM_INSTRUMENTS)
    soundfont: str  # name in available_soundfonts()
    tempo_bpm: int  # quarter notes per minute
    transpose: int  # semitones
    start: float  # where the excerpt starts, as a fraction of the valid start measures
    texture: str = "as_written"  # textures.TEXTURES: the excerpt, or its melody over an accompaniment
    levels: tuple[float, ...] = (-20.0,)  # dBFS RMS the clip is written at (one file per level)


# ---- plan ---------------------------------------------------------------------------------------
def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).parent


def catalog(coll: Collection) -> list[str]:
    """Every piece of a collection, sorted (abc files hold many tunes: one entry per X: number)."""
    root, pieces = corpus_root(), []
    for d in coll.dirs:
        for path in sorted((root / d).rglob("*")):
            if path.suffix not in SCORE_SUFFIXES or path.stat().st_size > MAX_SCORE_BYTES:
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".abc":
                numbers = re.findall(r"^X:\s*(\d+)", path.read_text(errors="replace"), re.M)
                pieces += [f"{rel}#{n}" for n in dict.fromkeys(numbers)]
            else:
                pieces.append(rel)
    return pieces


def choose_pieces(collections, n_pieces: int, rng: np.random.Generator) -> list[tuple[str, Collection]]:
    """`n_pieces` pieces drawn from `collections` in proportion to their weights."""
    total_w = sum(c.weight for c in collections)
    chosen: list[tuple[str, Collection]] = []
    for coll in collections:
        pieces = catalog(coll)
        n = min(len(pieces), max(1, round(n_pieces * coll.weight / total_w)))
        chosen += [(pieces[i], coll) for i in sorted(rng.choice(len(pieces), n, replace=False))]
    return chosen


def plan_corpus(size: CorpusSize, seed: int, soundfonts: list[str]) -> list[ClipSpec]:
    """Deterministic clip plan: which pieces, which split, and what each clip varies.

    Training collections are split train/valid/test BY PIECE; held-out collections make the
    out-of-distribution split, each of its clips written at every level of OOD_LEVELS."""
    rng = np.random.default_rng(seed)
    chosen = choose_pieces([c for c in COLLECTIONS if not c.held_out], size.n_pieces, rng)
    order = rng.permutation(len(chosen))  # split BY PIECE: a piece's clips share one split
    n_valid = max(1, round(len(chosen) * SPLITS["valid"]))
    n_test = max(1, round(len(chosen) * SPLITS["test"]))
    split_of = {int(i): "valid" for i in order[:n_valid]}
    split_of |= {int(i): "test" for i in order[n_valid : n_valid + n_test]}
    held_out = choose_pieces([c for c in COLLECTIONS if c.held_out], size.ood_pieces, rng) if size.ood_pieces else []
    specs = []
    for i, (piece, coll) in enumerate(chosen + held_out):
        ood = i >= len(chosen)
        for v in range(OOD_CLIPS_PER_PIECE if ood else size.clips_per_piece):
            specs.append(draw_clip(piece, coll, v, OOD if ood else split_of.get(i, "train"), soundfonts, rng))
    return specs


def draw_clip(piece: str, coll: Collection, v: int, split: str, soundfonts: list[str],
              rng: np.random.Generator) -> ClipSpec:
    """What clip `v` of `piece` varies: instrument, soundfont, tempo, key, excerpt, texture, level."""
    programs = sorted(GM_INSTRUMENTS)
    bounds = (TEMPO_RANGE[0], *TEMPO_BINS, TEMPO_RANGE[1])
    c = int(rng.integers(len(TEMPO_CLASSES)))  # tempo class uniform, then BPM in its bin
    stem = re.sub(r"[^A-Za-z0-9]+", "_", piece).strip("_")
    level = round(float(rng.uniform(*TRAIN_LEVELS)), 1)
    return ClipSpec(
        clip_id=f"{stem}_{v}", split=split, piece=piece, collection=coll.name, kind=coll.kind,
        composer=coll.composer, program=int(programs[rng.integers(len(programs))]),
        soundfont=soundfonts[int(rng.integers(len(soundfonts)))],
        tempo_bpm=int(rng.integers(bounds[c], bounds[c + 1])),
        transpose=int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1)),
        start=float(rng.random()), texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        levels=OOD_LEVELS if split == OOD else (level,),
    )


# ---- render -------------------------------------------------------------------------------------
def parse_piece(piece: str):
    from music21 import corpus, stream

    path, _, number = piece.partition("#")
    score = corpus.parse(str(corpus_root() / path), number=int(number) if number else None)
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    return score


def excerpt(score, start: float, quarters: float):
    """Whole measures from a start chosen by `start` in [0, 1) covering `quarters` quarter notes."""
    measures = list(score.parts[0].getElementsByClass("Measure"))
    if not measures:
        raise ValueError("score has no measures")
    offsets = [float(m.offset) for m in measures]
    end = float(score.highestTime)
    starts = [i for i, o in enumerate(offsets) if o + quarters <= end] or [0]
    i0 = starts[int(start * len(starts))]
    i1 = next((j for j in range(i0, len(measures))
               if offsets[j] + float(measures[j].quarterLength) >= offsets[i0] + quarters),
              len(measures) - 1)  # fmt: skip
    # measures() shares notes with the score; the copy keeps transposition etc. out of the next clip
    return copy.deepcopy(score.measures(i0, i1 + 1, indicesNotNumbers=True))  # end exclusive


def strip_repeats(seg) -> None:
    """Play an excerpt straight through: music21 refuses to write MIDI for badly formed repeats,
    and a few seconds of music need none."""
    from music21 import bar, repeat, spanner

    for m in seg.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(m, side), bar.Repeat):
                setattr(m, side, None)
    for el in list(seg.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        el.activeSite.remove(el)


def set_tempo(seg, bpm: int) -> None:
    """Replace every tempo indication with one MetronomeMark (quarter = bpm) at the start."""
    from music21 import tempo

    for mark in list(seg.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    for part in seg.parts:
        first = part.getElementsByClass("Measure").first() or part
        first.insert(0, tempo.MetronomeMark(number=bpm))


def clip_facts(spec: ClipSpec, score, clip_seconds: float, sample_rate: int, font_path: str):
    """Render one clip; returns (mono float32 audio, facts dict)."""
    from music21 import key as music21_key
    from music21 import meter

    quarters = clip_seconds * spec.tempo_bpm / 60.0
    for attempt in range(4):  # a later start if the excerpt is silent (a long rest)
        seg = excerpt(score, (spec.start + 0.37 * attempt) % 1.0, quarters)
        sigs = list(seg.recurse().getElementsByClass(meter.TimeSignature)) or list(
            score.recurse().getElementsByClass(meter.TimeSignature)
        )
        if not sigs:
            raise ValueError("no time signature")
        strip_repeats(seg)
        seg = apply_texture(seg, spec.texture, np.random.default_rng(zlib.crc32(spec.clip_id.encode())))
        set_tempo(seg, spec.tempo_bpm)
        if spec.transpose:
            seg.transpose(spec.transpose, inPlace=True)
        key = seg.analyze("key")  # from the pitches, not the (transposed) signature
        for sig in list(seg.recurse().getElementsByClass(music21_key.KeySignature)):
            sig.activeSite.remove(sig)  # silent in MIDI, and >7 sharps after transposing breaks the writer
        audio = render_score(seg, spec.program, font_path, sample_rate)[: int(clip_seconds * sample_rate)]
        if audio.size and float(np.sqrt(np.mean(audio**2))) >= MIN_RMS:
            break
    else:
        raise ValueError("every excerpt tried was silent")
    composer = spec.composer or _COMPOSERS.get(spec.piece.split("/")[0])
    facts = dict(
        id=spec.clip_id, split=spec.split, piece=spec.piece,
        instrument=GM_INSTRUMENTS[spec.program][0], family=family_of(spec.program),
        program=spec.program, tempo_bpm=spec.tempo_bpm, tempo_class=tempo_class(spec.tempo_bpm),
        key=normalize_key(key.tonic.name), mode=key.mode, meter=sigs[0].ratioString,
        composer=composer, collection=None if composer else spec.collection, kind=spec.kind,
        soundfont=spec.soundfont, transpose=spec.transpose, texture=spec.texture,
        duration=round(audio.size / sample_rate, 4), sample_rate=sample_rate,
    )  # fmt: skip
    return audio.astype(np.float32), facts


def at_level(audio: np.ndarray, level_db: float) -> np.ndarray:
    """`audio` scaled to `level_db` dBFS RMS, or less where its peak would pass PEAK_LIMIT (loudness
    is not a fact we caption: the levels are there so that no level is special to the model)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    gain = min(10 ** (level_db / 20) / rms, PEAK_LIMIT / float(np.abs(audio).max()))
    return (audio * gain).astype(np.float32)


def ood_conditions() -> list[tuple[float, str]]:
    """(level, file suffix) of each out-of-distribution condition: ood_m30.jsonl is -30 dBFS RMS."""
    return [(level, f"_m{round(-level):02d}") for level in OOD_LEVELS]


def level_files(spec: ClipSpec) -> list[tuple[float, str]]:
    """(level, clip id) of each file a spec writes: its own id, or one per level (`_m30` ...)."""
    if len(spec.levels) == 1:
        return [(spec.levels[0], spec.clip_id)]
    return [(level, f"{spec.clip_id}_m{round(-level):02d}") for level in spec.levels]


def _render_piece(job) -> list[dict]:
    """Worker: render the clips of one piece that are not on disk yet. Never raises."""
    specs, audio_dir, clip_seconds, sample_rate, fonts = job
    out, score = [], None
    for spec in specs:
        files = [(level, clip_id, audio_dir / f"{clip_id}.flac", audio_dir / f"{clip_id}.json")
                 for level, clip_id in level_files(spec)]
        if all(wav.exists() and facts.exists() for *_, wav, facts in files):  # resume: an earlier run made them
            out += [{**json.loads(facts.read_text()), "audio": str(wav.resolve())} for *_, wav, facts in files]
            continue
        try:
            score = score if score is not None else parse_piece(spec.piece)
            audio, facts = clip_facts(spec, score, clip_seconds, sample_rate, fonts[spec.soundfont])
        except Exception as e:  # one bad piece must not end a long build: record it
            out.append({"id": spec.clip_id, "piece": spec.piece, "skipped": f"{type(e).__name__}: {e}"})
            continue
        for level, clip_id, wav_path, facts_path in files:
            leveled = at_level(audio, level)
            with atomic_path(wav_path) as tmp:
                sf.write(tmp, leveled, sample_rate, subtype="PCM_16")
            rms_db = 20 * np.log10(float(np.sqrt(np.mean(np.square(leveled, dtype=np.float64)))))
            record = {**facts, "id": clip_id, "level_db": level, "rms_dbfs": round(rms_db, 2),
                      "audio": str(wav_path.resolve())}
            write_text_atomic(facts_path, json.dumps(record))
            out.append(record)
    return out


def clip_captions(facts: dict, seed: int, n: int) -> list[str]:
    """`n` distinct wordings of one clip's facts (fewer if its words allow fewer). Each is drawn
    from the clip's id, so it is stable however the build ran; the first is the same whatever `n`."""
    if n < 1:
        raise ValueError(f"captions per clip must be >= 1, got {n}")
    crc = zlib.crc32(facts["id"].encode())
    captions = [describe(facts, np.random.default_rng([seed, crc]))]
    for k in range(1, 20 * n):  # distinct draws get rare for clips with few word choices
        if len(captions) == n:
            break
        caption = describe(facts, np.random.default_rng([seed, crc, k]))
        if caption not in captions:
            captions.append(caption)
    return captions


def render_pieces(jobs: list[tuple], n_clips: int, workers: int | None, progress: bool) -> list[dict]:
    """Render every piece's clips (one job per piece, in `workers` processes); the clip records
    sorted by id, so the result does not depend on which process finished first."""
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    results: list[dict] = []
    with tqdm(total=n_clips, desc="demo corpus", unit="clip", disable=not progress) as bar:
        if workers <= 1:
            mapped = map(_render_piece, jobs)
        else:
            pool = mp.get_context("spawn").Pool(workers)
            mapped = pool.imap_unordered(_render_piece, jobs)
        for clips in mapped:
            results += clips
            bar.update(len(clips))
        if workers > 1:
            pool.close()
            pool.join()
    return sorted(results, key=lambda r: r["id"])


def build_demo_corpus(
    out: str | Path,
    size: str | CorpusSize = "smoke",
    seed: int = 0,
    workers: int | None = None,
    clip_seconds: float = 5.0,
    sample_rate: int = 24000,
    progress: bool = True,
    captions_per_clip: int = CAPTIONS_PER_CLIP,
) -> dict:
    """Build (or finish building) the demo corpus in `out`; returns a summary dict.

    Writes `train.jsonl`, `valid.jsonl`, `test.jsonl` (one line per clip: audio, text, the facts
    and, with `captions_per_clip` > 1, `references`: other wordings of the same facts),
    `captions.txt` (every wording of the train captions + template instructions, for SentencePiece),
    `skipped.jsonl` (pieces that could not be used, with the reason) and `audio/*.flac`.
    """

    size = SIZES[size] if isinstance(size, str) else size
    fonts = available_soundfonts()
    if not fonts:
        raise RuntimeError("no General MIDI soundfont installed: run `bash scripts/setup.sh`")
    out = Path(out)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_corpus(size, seed, sorted(fonts))
    by_piece: dict[str, list[ClipSpec]] = {}
    for s in specs:
        by_piece.setdefault(s.piece, []).append(s)
    jobs = [(group, audio_dir, clip_seconds, sample_rate, fonts) for group in by_piece.values()]
    results = render_pieces(jobs, len(specs), workers, progress)
    skipped = [r for r in results if "skipped" in r]
    rows = [r for r in results if "skipped" not in r]
    for r in rows:
        r["text"], *references = clip_captions(r, seed, captions_per_clip)
        if references:
            r["references"] = references
    counts = {}
    for split in (*SPLITS, OOD):
        lines = [{"audio": r["audio"], "text": r["text"], **r} for r in rows if r["split"] == split]
        write_jsonl(out / f"{split}.jsonl", lines)
        counts[split] = len(lines)
    for level, suffix in ood_conditions():  # the out-of-distribution split once per level, too
        write_jsonl(out / f"{OOD}{suffix}.jsonl",
                    [{"audio": r["audio"], "text": r["text"], **r} for r in rows
                     if r["split"] == OOD and r["level_db"] == level])
    write_jsonl(out / "skipped.jsonl", skipped)
    captions = [c for r in rows if r["split"] == "train" for c in [r["text"], *r.get("references", [])]]
    captions += instruction_texts()
    write_text_atomic(out / "captions.txt", "\n".join(captions) + "\n")
    summary = dict(out=str(out), seed=seed, clips=counts, skipped=len(skipped),
                   pieces=len(by_piece), soundfonts=sorted(fonts), clip_seconds=clip_seconds,
                   audio_seconds=round(sum(r["duration"] for r in rows), 1),
                   captions_per_clip=captions_per_clip)  # fmt: skip
    return summary
