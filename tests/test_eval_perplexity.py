"""Per-modality perplexity: equal to a hand computation over the held-out loader's batches."""

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from mmtok.eval.evaluate import heldout_perplexity
from mmtok.eval.perplexity import modality_perplexity
from mmtok.tokenizer.layout import IGNORE_INDEX, Modality


def test_perplexity_equals_hand_computation(trained_run, clip_shards):
    from mmtok.checkpoint import load_for_inference

    model, run_config, tok = load_for_inference(trained_run)
    shards = f"{clip_shards / 'shards.jsonl'}#valid"
    data = replace(run_config.data, valid_shards=shards, batch_size=1)
    batches = list(data.build(tok, split="valid"))
    assert len(batches) >= 2

    # By hand: token-level cross-entropy, pooled over all batches, split by target modality.
    ce_sum = {"all": 0.0, "text": 0.0, "audio": 0.0}
    count = dict.fromkeys(ce_sum, 0)
    with torch.no_grad():
        for b in batches:
            logits = model(b.tokens, b.positions, b.doc_ids)
            for name, keep in (("all", b.targets != IGNORE_INDEX),
                               ("text", (b.targets != IGNORE_INDEX) & (b.modality == Modality.TEXT)),
                               ("audio", (b.targets != IGNORE_INDEX) & (b.modality == Modality.AUDIO))):
                ce_sum[name] += F.cross_entropy(logits[keep], b.targets[keep], reduction="sum").item()
                count[name] += int(keep.sum())

    got = modality_perplexity(model, batches)
    assert got == heldout_perplexity(model, tok, run_config, shards, max_rows=len(batches))
    for name in ce_sum:
        assert got[name]["tokens"] == count[name] > 0
        assert math.isclose(got[name]["loss"], ce_sum[name] / count[name], rel_tol=1e-6)
        assert math.isclose(got[name]["perplexity"], math.exp(ce_sum[name] / count[name]), rel_tol=1e-6)
    # The model learned something: held-out perplexity is far below uniform over the vocabulary.
    assert got["all"]["perplexity"] < len(tok) / 2

    # max_batches counts rows here (batch_size 1): the first row alone.
    first = modality_perplexity(model, batches, max_batches=1)
    assert first["all"]["tokens"] == int((batches[0].targets != IGNORE_INDEX).sum())
