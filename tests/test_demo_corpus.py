"""Demo corpus (real rendered music21 pieces) and caption wording / parsing."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from mmtok.demo.captions import (
    ATTRIBUTES,
    FAMILIES,
    GM_INSTRUMENTS,
    KEYS,
    MODES,
    TEMPO_CLASSES,
    describe,
    family_of,  # fmt: skip
    parse_caption,
    tempo_class,
)
from mmtok.demo.corpus import (
    COLLECTIONS,
    OOD,
    OOD_LEVELS,
    SIZES,
    TRAIN_LEVELS,
    CorpusSize,
    build_demo_corpus,
    clip_captions,
    corpus_size,
    ood_conditions,
    plan_corpus,
)
from mmtok.demo.textures import TEXTURES

MANIFEST_FIELDS = ("audio", "text", "piece", "instrument", "family", "program", "tempo_bpm", "tempo_class",
                   "key", "mode", "meter", "soundfont", "transpose", "duration")  # fmt: skip


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manifests_split_by_piece_with_real_audio(demo_corpus_dir):
    splits = {s: read(demo_corpus_dir / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert all(splits.values()), {s: len(r) for s, r in splits.items()}
    pieces = {s: {r["piece"] for r in rows} for s, rows in splits.items()}
    assert not (pieces["train"] & pieces["valid"] or pieces["train"] & pieces["test"] or pieces["valid"] & pieces["test"])
    rows = [r for rs in splits.values() for r in rs]
    assert read(demo_corpus_dir / "skipped.jsonl") == []
    assert len({r["soundfont"] for r in rows}) >= 2, "timbre variety needs several soundfonts"
    assert len({r["family"] for r in rows}) >= 4
    assert any(r.get("composer") for r in rows) and any(r.get("collection") for r in rows)
    for r in rows:
        assert all(r.get(f) is not None for f in MANIFEST_FIELDS), r
        assert r["family"] == family_of(r["program"]) and r["tempo_class"] == tempo_class(r["tempo_bpm"])
        assert r["key"] in KEYS and r["mode"] in MODES and "/" in r["meter"]
        wav, sr = sf.read(r["audio"], dtype="float32")
        assert sr == r["sample_rate"] and abs(len(wav) / sr - r["duration"]) < 1e-3
        assert 2.0 <= r["duration"] <= 3.0
        assert np.sqrt(np.mean(wav**2)) > 1e-3 and np.isfinite(wav).all()  # real music, not silence
        # The caption states the facts, and the evaluation's parser reads them back.
        parsed = parse_caption(r["text"])
        for attr in ATTRIBUTES:
            assert parsed[attr] == r[attr], (attr, r["text"])
        assert str(r["tempo_bpm"]) in r["text"]
    captions = (demo_corpus_dir / "captions.txt").read_text().splitlines()
    assert {r["text"] for r in splits["train"]} <= set(captions)
    assert not {r["text"] for r in splits["test"]} & set(captions) - {r["text"] for r in splits["train"]}


def test_key_follows_transposition(demo_corpus_dir):
    """Two clips of one piece transposed differently: music21's own analysis of the transposed
    excerpt is the oracle for the key the manifest states."""
    from mmtok.demo.corpus import excerpt, parse_piece

    rows = read(demo_corpus_dir / "train.jsonl")
    r = next(r for r in rows if r["piece"].startswith("bach/"))
    score = parse_piece(r["piece"])
    seg = excerpt(score, 0.0, 8.0)
    k0 = seg.analyze("key")
    seg.transpose(7, inPlace=True)
    k7 = seg.analyze("key")
    assert (k7.tonic.pitchClass - k0.tonic.pitchClass) % 12 == 7 and k0.mode == k7.mode
    assert excerpt(score, 0.0, 8.0).analyze("key").tonic.name == k0.tonic.name  # the score is untouched


def test_plan_is_deterministic_and_varied():
    fonts = ["fluidr3", "musescore", "timgm6mb"]
    a, b = plan_corpus(SIZES["smoke"], 3, fonts), plan_corpus(SIZES["smoke"], 3, fonts)
    assert a == b and a != plan_corpus(SIZES["smoke"], 4, fonts)
    inside = [s for s in a if s.split != OOD]
    pieces = {s.piece for s in inside}
    assert len(inside) == len(pieces) * SIZES["smoke"].clips_per_piece
    assert abs(len(pieces) - SIZES["smoke"].n_pieces) <= 2  # each collection's share is rounded
    assert len({s.program for s in a}) >= 15 and {s.soundfont for s in a} == set(fonts)
    assert {tempo_class(s.tempo_bpm) for s in a} == set(TEMPO_CLASSES)
    assert len({s.transpose for s in a}) >= 6 and len({s.collection for s in inside}) >= 5
    assert {s.texture for s in inside} == set(TEXTURES)
    assert all(len(s.levels) == 1 and TRAIN_LEVELS[0] <= s.levels[0] <= TRAIN_LEVELS[1] for s in inside)


def test_the_out_of_distribution_split_shares_no_piece_or_collection_with_training(demo_corpus_dir):
    held_out = {c.name for c in COLLECTIONS if c.held_out}
    trained = [r for s in ("train", "valid", "test") for r in read(demo_corpus_dir / f"{s}.jsonl")]
    ood = read(demo_corpus_dir / "ood.jsonl")
    assert ood and {r["piece"] for r in ood}.isdisjoint(r["piece"] for r in trained)
    named = lambda r: {r.get("collection"), r.get("composer")}  # the caption names one of the two
    assert all(named(r).isdisjoint(held_out) for r in trained)
    assert {c.name for c in COLLECTIONS if c.held_out and c.composer} <= {r["composer"] for r in ood} | held_out
    assert {dir_ for c in COLLECTIONS if c.held_out for dir_ in c.dirs} >= {r["piece"].split("/")[0] for r in ood}
    # Every clip at each level: the same music, scaled; quiet levels exact, loud ones peak-limited.
    for level, suffix in ood_conditions():
        rows = read(demo_corpus_dir / f"ood{suffix}.jsonl")
        assert len(rows) == len(ood) // len(OOD_LEVELS) and all(r["level_db"] == level for r in rows)
        for r in rows:
            wav, _ = sf.read(r["audio"], dtype="float32")
            rms_db = 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
            assert rms_db == pytest.approx(r["rms_dbfs"], abs=0.05) and r["rms_dbfs"] <= level + 0.05
            assert np.abs(wav).max() <= 0.99 + 1e-4
            if level == OOD_LEVELS[0]:  # the quietest level leaves headroom for any peak
                assert r["rms_dbfs"] == pytest.approx(level, abs=0.05)
    trained_levels = [r["rms_dbfs"] for r in trained]
    assert max(trained_levels) - min(trained_levels) > 6  # clips of the other splits at varied levels


@pytest.mark.parametrize("piece", ["essenFolksong/altdeu10.abc#1", "bach/bwv66.6.mxl"])
def test_textures_put_the_melody_over_an_accompaniment_in_the_same_key(piece):
    from mmtok.demo.corpus import excerpt, parse_piece
    from mmtok.demo.textures import apply_texture

    score = parse_piece(piece)
    key = excerpt(score, 0.0, 12.0).analyze("key")
    top = [n.pitches[-1].ps for n in excerpt(score, 0.0, 12.0).parts[0].flatten().notes]
    for name in TEXTURES:
        textured = apply_texture(excerpt(score, 0.0, 12.0), name, np.random.default_rng(0))
        notes = list(textured.recurse().notes)
        assert notes and all(30 <= n.volume.velocity <= 120 for n in notes), name
        if name != "as_written":
            assert len(notes) > len(top), name  # something was added under (or beside) the melody
        if name in ("block_chords", "alberti", "arpeggio", "wide"):
            melody = [n.pitches[-1].ps - (12 if name == "wide" else 0) for n in textured.parts[0].flatten().notes]
            assert melody == top, name  # the tune itself is kept
            assert textured.analyze("key").sharps == key.sharps, name  # the harmony fits the key (or its relative)


def test_corpus_size_replaces_either_number_of_a_named_size():
    assert corpus_size("default") == SIZES["default"]
    assert corpus_size("default", clips_per_piece=8) == CorpusSize(SIZES["default"].n_pieces, 8, SIZES["default"].ood_pieces)
    assert corpus_size("smoke", pieces=10) == CorpusSize(10, SIZES["smoke"].clips_per_piece, SIZES["smoke"].ood_pieces)
    fonts = ["fluidr3", "timgm6mb"]
    more = plan_corpus(corpus_size("smoke", clips_per_piece=5), 0, fonts)
    same_pieces = plan_corpus(SIZES["smoke"], 0, fonts)
    # More clips of the SAME pieces in the SAME splits: the test split stays unseen whatever the size.
    assert {(s.piece, s.split) for s in more} == {(s.piece, s.split) for s in same_pieces}
    assert len([s for s in more if s.split != OOD]) == 5 * len({s.piece for s in more if s.split != OOD})
    with pytest.raises(ValueError, match="unknown corpus size 'huge'"):
        corpus_size("huge")
    with pytest.raises(ValueError, match="clips_per_piece must be >= 1"):
        corpus_size("default", clips_per_piece=0)


def test_build_resumes_without_rerendering(demo_corpus_dir):
    before = {p.name: p.stat().st_mtime_ns for p in (demo_corpus_dir / "audio").glob("*.flac")}
    manifest = (demo_corpus_dir / "train.jsonl").read_text()
    summary = build_demo_corpus(demo_corpus_dir, CorpusSize(6, 2, 3), seed=0, workers=1, clip_seconds=3.0,
                                progress=False, captions_per_clip=3)  # fmt: skip
    after = {p.name: p.stat().st_mtime_ns for p in (demo_corpus_dir / "audio").glob("*.flac")}
    assert before == after and (demo_corpus_dir / "train.jsonl").read_text() == manifest
    assert summary["skipped"] == 0 and sum(summary["clips"].values()) == len(after)


def test_captions_per_clip_word_the_same_facts_differently(demo_corpus_dir, tmp_path):
    rows = [r for s in ("train", "valid", "test") for r in read(demo_corpus_dir / f"{s}.jsonl")]
    for r in rows:
        captions = [r["text"], *r["references"]]
        assert len(set(captions)) == 3, captions
        parsed = [parse_caption(c) for c in captions]  # every wording carries every attribute
        assert all(p == parsed[0] for p in parsed) and parsed[0]["family"] == r["family"], captions
    train_captions = (demo_corpus_dir / "captions.txt").read_text().splitlines()
    assert {c for r in read(demo_corpus_dir / "train.jsonl") for c in [r["text"], *r["references"]]} <= set(train_captions)
    # Another count rewrites the manifests only (no audio is rendered again); `text` stays the same.
    copy = tmp_path / "corpus"
    shutil.copytree(demo_corpus_dir, copy)
    before = {p.name: p.stat().st_mtime_ns for p in (copy / "audio").glob("*.flac")}
    build_demo_corpus(copy, CorpusSize(6, 2, 3), seed=0, workers=1, clip_seconds=3.0, progress=False,
                      captions_per_clip=1)  # fmt: skip
    assert before == {p.name: p.stat().st_mtime_ns for p in (copy / "audio").glob("*.flac")}
    one = read(copy / "train.jsonl")
    assert [r["text"] for r in one] == [r["text"] for r in read(demo_corpus_dir / "train.jsonl")]
    assert not any("references" in r for r in one)
    with pytest.raises(ValueError, match="captions per clip must be >= 1"):
        clip_captions(rows[0], 0, 0)


def test_parse_caption_recovers_every_attribute():
    rng = np.random.default_rng(0)
    for i in range(400):
        program = sorted(GM_INSTRUMENTS)[i % len(GM_INSTRUMENTS)]
        facts = dict(program=program, instrument=GM_INSTRUMENTS[program][0], tempo_bpm=int(rng.integers(50, 184)),
                     key=KEYS[i % 12], mode=MODES[i % 2], meter=["3/4", "4/4", "6/8", "2/2"][i % 4],
                     kind=["chorale", "folk", "renaissance", "classical"][i % 4])  # fmt: skip
        facts["composer" if i % 3 else "collection"] = ["J. S. Bach", "Essen folk song collection"][i % 3 == 0]
        text = describe(facts, rng)
        parsed = parse_caption(text)
        expect = dict(family=family_of(program), tempo_class=tempo_class(facts["tempo_bpm"]), key=facts["key"],
                      mode=facts["mode"], meter=facts["meter"], tempo_bpm=facts["tempo_bpm"])  # fmt: skip
        assert parsed == expect, text
    assert set(FAMILIES) >= {family_of(p) for p in GM_INSTRUMENTS}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A brisk jig on the fiddle.", {"tempo_class": "very fast"}),
        ("Slow cello in E-flat minor, 3/4.", {"family": "strings", "tempo_class": "slow", "key": "Eb",
                                               "mode": "minor", "meter": "3/4"}),
        ("very fast pipe organ at 150 bpm", {"family": "organ", "tempo_class": "very fast", "tempo_bpm": 150}),
        ("harp music at 100 BPM", {"family": "strings", "tempo_bpm": 100, "tempo_class": "moderate"}),
        ("nothing musical here", {}),
    ],
)  # fmt: skip
def test_parse_caption_free_text(text, expected):
    assert parse_caption(text) == expected


def test_cli_demo_corpus_resumes(demo_corpus_dir, capsys):
    from mmtok.cli import main

    manifest = (demo_corpus_dir / "valid.jsonl").read_text()
    assert main(["data", "demo-corpus", "--out", str(demo_corpus_dir), "--pieces", "6", "--clips-per-piece", "2",
                 "--ood-pieces", "3", "--clip-seconds", "3", "--workers", "1", "--captions-per-clip", "3"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == 0 and summary["pieces"] == len({r["piece"] for s in ("train", "valid", "test")
                                                                 for r in read(demo_corpus_dir / f"{s}.jsonl")}) + len(
        {r["piece"] for r in read(demo_corpus_dir / "ood.jsonl")})
    assert (demo_corpus_dir / "valid.jsonl").read_text() == manifest
