"""`mmtok eval` end to end on the tiny trained checkpoint: every metric, equal to pycocoevalcap
called directly on the same captions; perplexity on held-out shards; attributes; bad inputs."""

import json
import shutil

import pytest

from mmtok.cli import main


def coco_direct(captions, references):
    """pycocoevalcap exactly as its own example runs it (PTBTokenizer, then the scorers)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return Bleu(4).compute_score(gts, res, verbose=0)[0], Cider().compute_score(gts, res)[0]


def test_eval_reports_every_metric(trained_run, clip_manifest, clip_shards, tmp_path, capsys):
    # One unreadable item: skipped and listed, the rest is evaluated.
    manifest = tmp_path / "test.jsonl"
    lines = clip_manifest.read_text().splitlines()
    broken = {**json.loads(lines[0]), "audio": str(tmp_path / "lost.wav")}
    manifest.write_text("\n".join([*lines, json.dumps(broken)]) + "\n")
    out = tmp_path / "report"
    rc = main(["eval", "--checkpoint", str(trained_run), "--manifest", str(manifest),
               "--shards", f"{clip_shards / 'shards.jsonl'}#valid", "--attributes", "--out", str(out),
               "--max-new-tokens", "24", "--sample", "--top-k", "20", "--seed", "0"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert "lost.wav" in stderr and "CIDEr" in stdout
    report = json.loads((out / "eval.json").read_text())
    assert [s["audio"] for s in report["skipped"]] == [broken["audio"]]

    metrics = report["caption_metrics"]
    assert list(metrics) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    samples = report["samples"]
    assert len(samples) == report["n_captions"] == len(lines)
    bleu, cider = coco_direct([s["caption"] for s in samples], [[s["reference"]] for s in samples])
    assert metrics["BLEU-1"] > 0  # the trained model writes caption words: a non-trivial comparison
    assert metrics["BLEU-1"] == pytest.approx(bleu[0], abs=1e-12)
    assert metrics["BLEU-4"] == pytest.approx(bleu[3], abs=1e-12)
    assert metrics["CIDEr"] == pytest.approx(cider, abs=1e-12)
    assert all(0 <= metrics[m] <= 1 for m in ("METEOR", "ROUGE-L"))

    ppl = report["perplexity"]
    assert ppl["text"]["tokens"] > 0 and ppl["audio"]["tokens"] > 0
    assert ppl["all"]["tokens"] >= ppl["text"]["tokens"] + ppl["audio"]["tokens"]
    assert all(1 < p["perplexity"] < 2000 for p in ppl.values())  # below uniform over ~1.6k ids

    attrs = report["attributes"]
    assert attrs["meter"]["majority_baseline"] == 1.0  # every chorale excerpt is in 4/4
    assert attrs["instrument_name"]["n"] == len(lines)
    md = (out / "eval.md").read_text()
    assert "| CIDEr |" in md and "| audio |" in md and "| tempo_class |" in md


def test_eval_limit_and_bad_inputs(trained_run, clip_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rc = main(["eval", "--checkpoint", str(run), "--manifest", str(clip_manifest), "--limit", "2",
               "--no-meteor", "--max-new-tokens", "8", "--cfg-coef", "2"])
    assert rc == 0
    # Default report directory: RUN/eval/step_N, outside the checkpoint that keep_last_k may delete.
    (step,) = (run / "checkpoints").glob("step_*")
    report = json.loads((run / "eval" / step.name / "eval.json").read_text())
    assert report["n_captions"] == 2 and "METEOR" not in report["caption_metrics"]
    assert report["generation"]["cfg_coef"] == 2.0  # guided captions, and the report says so
    assert "perplexity" not in report and "attributes" not in report
    capsys.readouterr()
    # --attributes on a manifest without attribute fields (a user's own captions): said, not silent.
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"audio": r["audio"], "text": r["text"]}) + "\n"
                             for r in map(json.loads, clip_manifest.read_text().splitlines()[:2])))
    rc = main(["eval", "--checkpoint", str(run), "--manifest", str(plain), "--attributes", "--no-meteor",
               "--max-new-tokens", "8", "--out", str(tmp_path / "plain")])
    assert rc == 0
    assert "no attribute accuracy" in capsys.readouterr().err
    assert json.loads((tmp_path / "plain" / "eval.json").read_text())["attributes"] == {}
    assert "nothing to score" in (tmp_path / "plain" / "eval.md").read_text()

    def error(*argv):
        rc = main(["eval", "--checkpoint", str(trained_run), *map(str, argv)])
        err = capsys.readouterr().err
        assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    assert "does not exist" in error("--manifest", tmp_path / "none.jsonl")
    assert "cfg_coef must be finite and >= 0" in error("--manifest", clip_manifest, "--cfg-coef", "-1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav"}\n')
    assert "bad.jsonl:1" in error("--manifest", bad)
    assert "no shards found" in error("--manifest", clip_manifest, "--shards", tmp_path / "no-shards")
