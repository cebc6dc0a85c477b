"""Caption metrics as the captioning literature reports them (COCO caption evaluation).

BLEU-1..4, METEOR, ROUGE-L and CIDEr come from `pycocoevalcap` after Stanford PTB tokenization
(lower-cased, punctuation removed), exactly the pipeline of the MS-COCO / AudioCaps / Clotho
papers, so numbers are comparable with theirs. SPICE is left out: its jar downloads Stanford
CoreNLP models on first use, which is impossible offline.

Java (>= 8) must be on PATH: the PTB tokenizer and METEOR are Java programs shipped inside
pycocoevalcap. METEOR costs one JVM start (~6-8 s); pass `meteor=False` to skip it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

# Names of the corpus-level scores, in the order tables print them.
METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


class MetricToolError(RuntimeError):
    """A Java tool of pycocoevalcap is missing or failed (the message says which)."""


@dataclass
class CaptionScores:
    corpus: dict[str, float]  # metric name -> corpus-level score (what papers report)
    per_caption: list[dict[str, float]]  # one dict per prediction, same metric names


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MetricToolError(
            "caption metrics need Java on PATH (PTB tokenizer and METEOR are Java programs): "
            "install a JRE, e.g. `apt-get install openjdk-17-jre-headless`"
        )
    return java


def ptb_tokenize(captions: Sequence[str]) -> list[str]:
    """Stanford PTB tokenization as pycocoevalcap's PTBTokenizer does it, one string per caption.

    Same jar, flags and punctuation filter as `PTBTokenizer.tokenize`, but the temporary input
    file goes to the system temp dir (pycocoevalcap writes it next to its own jar, which fails in
    a read-only install such as a shared cluster environment) and the captions are a plain list.
    """
    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    java = _require_java()
    jar = os.path.join(os.path.dirname(os.path.abspath(ptb.__file__)), ptb.STANFORD_CORENLP_3_4_1_JAR)
    # -preserveLines keeps one output line per input line, so captions must be single lines.
    text = "\n".join(c.replace("\n", " ").replace("\r", " ") for c in captions)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        proc = subprocess.run(
            [java, "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", f.name],
            capture_output=True,
        )
    finally:
        os.remove(f.name)
    if proc.returncode != 0:
        raise MetricToolError(f"PTB tokenizer (java) failed: {proc.stderr.decode(errors='replace')[-500:]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(captions):  # trailing empty captions produce no trailing lines
        lines += [""] * (len(captions) - len(lines))
    keep = lambda w: w not in ptb.PUNCTUATIONS  # noqa: E731
    return [" ".join(filter(keep, line.rstrip().split(" "))) for line in lines[: len(captions)]]


def _meteor(gts: dict, res: dict) -> tuple[float, list[float]]:
    from pycocoevalcap.meteor.meteor import Meteor

    _require_java()
    scorer = Meteor()
    try:
        return scorer.compute_score(gts, res)
    except ValueError:  # the JVM died: readline() returned b"" instead of a score
        scorer.meteor_p.kill()
        err = scorer.meteor_p.stderr.read().decode(errors="replace")[-500:]
        raise MetricToolError(f"METEOR (java) failed: {err or 'no output'}") from None


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    meteor: bool = True,
) -> CaptionScores:
    """Score `predictions[i]` against `references[i]` (one reference string or several).

    Note CIDEr's IDF weights come from the evaluated references themselves, so it needs a corpus:
    on a single caption every n-gram has zero IDF and CIDEr is 0.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    if not predictions:
        raise ValueError("no captions to score")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every prediction needs at least one reference caption")

    # Tokenize everything in one JVM call, then split back into references and predictions.
    flat_refs = [r for rs in refs for r in rs]
    tokens = ptb_tokenize([*flat_refs, *predictions])
    gts, res, at = {}, {}, 0
    for i, rs in enumerate(refs):
        gts[i], at = tokens[at : at + len(rs)], at + len(rs)
        res[i] = [tokens[len(flat_refs) + i]]

    corpus: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"BLEU-{n + 1}"], per[f"BLEU-{n + 1}"] = bleu[n], bleu_each[n]
    if meteor:
        corpus["METEOR"], per["METEOR"] = _meteor(gts, res)
    corpus["ROUGE-L"], per["ROUGE-L"] = Rouge().compute_score(gts, res)
    corpus["CIDEr"], per["CIDEr"] = Cider().compute_score(gts, res)

    corpus = {k: float(v) for k, v in corpus.items()}
    per_caption = [{k: float(per[k][i]) for k in corpus} for i in range(len(predictions))]
    return CaptionScores(corpus=corpus, per_caption=per_caption)
