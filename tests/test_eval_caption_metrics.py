"""Caption metrics: equal to pycocoevalcap's own pipeline (PTBTokenizer + scorers) on the same captions."""

import pytest

from mmtok.eval.caption_metrics import METRICS, caption_metrics, ptb_tokenize

REFS = [
    ["A slow piano piece in D minor, in 4/4 time.", "Slow solo piano, D minor."],
    ["A fast violin melody in G major (3/4)."],
    ["Church organ playing a chorale in A minor at a moderate tempo."],
    ["A nylon-string guitar plays a lively tune in E major."],
]
PREDS = [
    "a slow piano piece in d minor",
    "a violin melody in G major, fast!",
    "an organ chorale in a minor",
    "",  # a model may stop at once: an empty caption must score 0, not crash
]


def _coco(preds, refs):
    """pycocoevalcap called directly, as its own example (coco_eval_example) does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in rs] for i, rs in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return bleu, cider


def test_ptb_tokenize_matches_pycocoevalcap():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    caps = [r for rs in REFS for r in rs] + PREDS
    theirs = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(caps)})
    assert ptb_tokenize(caps) == [theirs[i][0] for i in range(len(caps))]


def test_scores_equal_pycocoevalcap_direct():
    scores = caption_metrics(PREDS, REFS)
    assert tuple(scores.corpus) == METRICS
    bleu, cider = _coco(PREDS, REFS)
    assert scores.corpus["BLEU-4"] == pytest.approx(bleu[3], abs=1e-12)
    assert scores.corpus["BLEU-1"] == pytest.approx(bleu[0], abs=1e-12)
    assert scores.corpus["CIDEr"] == pytest.approx(cider, abs=1e-12)
    assert 0 < scores.corpus["METEOR"] < 1 and 0 < scores.corpus["ROUGE-L"] < 1
    # The exact-match-ish first caption beats the empty last one on every metric.
    first, last = scores.per_caption[0], scores.per_caption[-1]
    assert all(first[m] > last[m] for m in METRICS)
    assert all(last[m] == 0 for m in METRICS)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        caption_metrics(["a", "b"], ["a"], meteor=False)
    with pytest.raises(ValueError, match="at least one reference"):
        caption_metrics(["a"], [[]], meteor=False)
    with pytest.raises(ValueError, match="no captions"):
        caption_metrics([], [], meteor=False)
