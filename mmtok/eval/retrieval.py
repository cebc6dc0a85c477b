"""Retrieval metrics as CLAP and TTMR report them, beside the random baseline, and the run that
ranks a manifest's clips and captions by the model's likelihood (`mmtok retrieve`).

For each query, the candidates are sorted by score (highest first; ties keep candidate order):

- R@k: share of queries with a relevant candidate in the first k;
- mAP@10: mean over queries of AP@10 = sum over the first 10 ranks k of P@k * rel_k, divided by
  min(number relevant, 10);
- median rank (and mean rank): of the first relevant candidate, 1-based.

The random baseline is each measure's expectation when the candidates are shuffled, computed
exactly from the number of candidates and of relevant ones per query (hypergeometric), not by
sampling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmtok.data.manifest import read_manifest
from mmtok.generate.retrieval import caption_scores

KS = (1, 5, 10)


def ranks_of_relevant(scores: np.ndarray, relevant: Sequence[set[int]]) -> list[list[int]]:
    """For each query (row of `scores`), the 1-based ranks of its relevant candidates, sorted."""
    out = []
    for row, rel in zip(scores, relevant):
        order = np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        out.append(sorted(int(rank[j]) for j in rel))
    return out


def retrieval_metrics(scores: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = KS) -> dict:
    """R@k, mAP@10, median and mean rank of the first relevant candidate (queries x candidates)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or len(relevant) != scores.shape[0]:
        raise ValueError(f"scores {scores.shape} need one set of relevant candidates per row, got {len(relevant)}")
    if any(not rel for rel in relevant):
        raise ValueError("every query needs at least one relevant candidate")
    ranks = ranks_of_relevant(scores, relevant)
    out = {f"R@{k}": float(np.mean([r[0] <= k for r in ranks])) for k in ks}
    aps = []
    for r in ranks:
        hits = [x for x in r if x <= 10]
        ap = sum((i + 1) / x for i, x in enumerate(hits))  # P@x at each relevant rank x <= 10
        aps.append(ap / min(len(r), 10))
    out["mAP@10"] = float(np.mean(aps))
    firsts = [r[0] for r in ranks]
    out["median_rank"] = float(np.median(firsts))
    out["mean_rank"] = float(np.mean(firsts))
    out["queries"], out["candidates"] = int(scores.shape[0]), int(scores.shape[1])
    return out


def random_baseline(n_candidates: int, relevant: Sequence[set[int]], ks: Sequence[int] = KS) -> dict:
    """The expected value of each measure under a random ranking (exact)."""
    n = n_candidates
    recall = {k: [] for k in ks}
    aps, medians, means = [], [], []
    for rel in relevant:
        r = len(rel)
        for k in ks:  # P(no relevant in the first k) = C(n-r, k) / C(n, k)
            recall[k].append(1.0 - (math.comb(n - r, k) / math.comb(n, k) if k <= n else 0.0))
        # E[rel_k * P@k] = (1/k) (r/n + (k-1) r(r-1) / (n(n-1)))
        e = sum((r / n + (k - 1) * r * (r - 1) / (n * (n - 1) if n > 1 else 1)) / k for k in range(1, min(10, n) + 1))
        aps.append(e / min(r, 10))
        # first relevant rank m: P(m) = C(n-m, r-1) / C(n, r)
        p = np.array([math.comb(n - m, r - 1) for m in range(1, n + 1)], dtype=np.float64) / math.comb(n, r)
        cdf = np.cumsum(p)
        medians.append(float(np.searchsorted(cdf, 0.5 - 1e-12) + 1))
        means.append(float((np.arange(1, n + 1) * p).sum()))
    out = {f"R@{k}": float(np.mean(v)) for k, v in recall.items()}
    out["mAP@10"] = float(np.mean(aps))
    out["median_rank"] = float(np.median(medians))
    out["mean_rank"] = float(np.mean(means))
    return out


def directions(scores: np.ndarray, caption_audio: Sequence[int], which: Sequence[str] = ("text2audio", "audio2text"),
               top_k: int = 10) -> dict:
    """Metrics, baseline and top-k lists of each direction from the (n_audio, n_captions) scores;
    `caption_audio[j]` is the clip caption j describes."""
    n_audio, n_cap = scores.shape
    out = {}
    for d in which:
        if d == "text2audio":
            s, rel = scores.T, [{int(caption_audio[j])} for j in range(n_cap)]
        elif d == "audio2text":
            s = scores
            rel = [{j for j in range(n_cap) if caption_audio[j] == a} for a in range(n_audio)]
        else:
            raise ValueError(f"direction must be text2audio or audio2text, got {d!r}")
        keep = [i for i, r in enumerate(rel) if r]  # a clip no caption describes is no audio2text query
        s, rel = s[keep], [rel[i] for i in keep]
        out[d] = {"metrics": retrieval_metrics(s, rel), "random": random_baseline(s.shape[1], rel),
                  "top": [[int(j) for j in np.argsort(-row, kind="stable")[:top_k]] for row in s],
                  "queries": keep}
    return out


def read_retrieval_set(captions: str | Path, audio: Sequence[str] | None = None) -> tuple[list[str], list[str], list]:
    """(audio paths, captions, caption -> audio index or None) from a manifest (`.jsonl`: each
    item's `text`; ground truth known) or a text file (one caption per line; no ground truth).
    `audio`: the clips to rank (default: the manifest's, in order)."""
    captions = Path(captions)
    if captions.suffix == ".jsonl":
        items = read_manifest(captions)
        clips = list(dict.fromkeys(i["audio"] for i in items)) if audio is None else [str(Path(a).resolve()) for a in audio]
        index = {p: n for n, p in enumerate(clips)}
        by_name = {}
        for n, p in enumerate(clips):
            by_name.setdefault(Path(p).name, n)
        texts, truth = [], []
        for item in items:
            texts.append(item["text"])
            truth.append(index.get(item["audio"], by_name.get(Path(item["audio"]).name)))
        return clips, texts, truth
    if audio is None:
        raise ValueError(f"{captions}: a caption list (not a .jsonl manifest) needs the clips to rank (--audio)")
    texts = [line.strip() for line in captions.read_text().splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{captions} holds no caption")
    return [str(a) for a in audio], texts, [None] * len(texts)


def evaluate_retrieval(captioner, clips: Sequence[str], captions: Sequence[str], truth: Sequence,
                       which: Sequence[str] = ("text2audio", "audio2text"), top_k: int = 10,
                       normalize: str = "pmi", batch_size: int = 64) -> dict:
    """Rank `clips` and `captions` against each other by `caption_scores`; with ground truth
    (`truth[j]`: caption j's clip index) also the metrics and random baseline of each direction."""
    t0 = time.perf_counter()
    codes = [captioner.encode(c) for c in clips]
    t_encode = time.perf_counter() - t0
    scores = caption_scores(captioner.model, captioner.tokenizer, codes, list(captions), normalize, batch_size)
    report = {"checkpoint": str(getattr(captioner, "source", "<in-memory model>")), "clips": list(clips),
              "captions": list(captions), "normalize": normalize,
              "seconds_per_clip": round(codes[0].n_frames / captioner.tokenizer.frame_rate, 3),
              "timing_s": {"encode": round(t_encode, 2), "score": round(time.perf_counter() - t0 - t_encode, 2)}}
    if all(t is not None for t in truth):
        report["directions"] = directions(scores, truth, which, top_k)
    else:
        report["rankings"] = {
            "audio2text": [[int(j) for j in np.argsort(-row, kind="stable")[:top_k]] for row in scores],
            "text2audio": [[int(j) for j in np.argsort(-row, kind="stable")[:top_k]] for row in scores.T]}
    report["scores"] = np.round(scores, 4).tolist()
    return report
