"""Attribute accuracy: captions written by the demo corpus's own `describe`, read back by its parser."""

import numpy as np
import pytest

from mmtok.demo.attributes import DEMO_GROUPS, demo_attribute_accuracy, parse_demo_caption
from mmtok.demo.captions import GM_INSTRUMENTS, describe, family_of, tempo_class

# (GM program, BPM, key, mode, meter): 6 clips; violin and key "D minor" are the majorities.
CLIPS = [(40, 60, "D", "minor", "3/4"), (40, 130, "D", "minor", "4/4"), (40, 90, "G", "major", "4/4"),
         (19, 60, "D", "minor", "4/4"), (0, 170, "Eb", "major", "6/8"), (73, 100, "A", "minor", "4/4")]


def records() -> list[dict]:
    return [dict(audio=f"c{i}.flac", text="", instrument=GM_INSTRUMENTS[p][0], family=family_of(p), program=p,
                 tempo_bpm=bpm, tempo_class=tempo_class(bpm), key=k, mode=m, meter=meter, kind="chorale")
            for i, (p, bpm, k, m, meter) in enumerate(CLIPS)]


def test_true_captions_score_one_and_the_baseline_is_the_majority_share():
    rng = np.random.default_rng(0)
    recs = records()
    captions = [describe(r, rng) for r in recs]
    scores = demo_attribute_accuracy(captions, recs)
    assert set(scores) == set(DEMO_GROUPS)
    assert all(s.accuracy == 1.0 and s.n == 6 for s in scores.values())
    assert scores["instrument_name"].majority_class == "violin"
    assert scores["instrument_name"].majority_baseline == pytest.approx(3 / 6)
    assert scores["key_mode"].majority_class == "d minor"
    assert scores["key_mode"].majority_baseline == pytest.approx(3 / 6)
    assert scores["meter"].majority_baseline == pytest.approx(4 / 6)


def test_wrong_and_partial_captions():
    recs = records()[:3]  # three violins
    captions = [
        "A viola plays a slow chorale in D minor, 3/4 time.",  # same family (strings), other instrument
        "Church organ, brisk, 150 BPM, D minor, 4/4 time.",  # wrong instrument and family
        "",  # says nothing
    ]
    scores = demo_attribute_accuracy(captions, recs)
    assert scores["instrument"].accuracy == pytest.approx(1 / 3)  # family counts
    assert scores["instrument_name"].accuracy == 0.0
    assert scores["tempo_class"].accuracy == pytest.approx(1 / 3)  # 60 BPM slow; 130 fast != very fast
    assert scores["key_mode"].accuracy == pytest.approx(2 / 3)
    assert scores["meter"].accuracy == pytest.approx(2 / 3)
    assert parse_demo_caption("") == {}


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="2 captions but 3"):
        demo_attribute_accuracy(["a", "b"], records()[:3])
