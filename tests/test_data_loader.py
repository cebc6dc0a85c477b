"""The training loader: exact resume, refusals, ranks, the valid split."""

import io
import json
from dataclasses import fields, replace
from itertools import islice

import numpy as np
import pytest
import torch

from mmtok.data.loader import DataConfig
from mmtok.data.templates import TemplateConfig, pick_caption


def config(data_shards, **kw):
    base = dict(train_shards=str(data_shards / "shards.jsonl#train"), valid_shards=str(data_shards / "shards.jsonl#valid"),
                seq_len=192, batch_size=2, shuffle_buffer=4, seed=3, workers=2)  # fmt: skip
    return DataConfig(**{**base, **kw})


def same(a, b):
    return all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def roundtrip(state):
    """Through torch.save and a weights_only load, as a checkpoint stores it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("workers", [2, 0])
def test_resume_yields_exactly_the_uninterrupted_batches(data_shards, tokenizer, workers):
    cfg = config(data_shards, workers=workers)
    full = list(islice(cfg.build(tokenizer), 9))  # long enough to cross shard and epoch boundaries
    for n in (3, 4):  # resume points on either worker
        first = cfg.build(tokenizer)
        head = list(islice(first, n))
        assert all(same(a, b) for a, b in zip(head, full))
        state = roundtrip(first.state_dict())
        resumed = cfg.build(tokenizer)
        resumed.load_state_dict(state)
        tail = list(islice(resumed, 9 - n))
        assert all(same(a, b) for a, b in zip(tail, full[n:])), f"resume after batch {n} diverged"
    assert not same(full[0], full[1])


def test_state_with_other_world_size_or_workers_is_refused(data_shards, tokenizer):
    loader = config(data_shards).build(tokenizer)
    next(iter(loader))
    state = loader.state_dict()
    with pytest.raises(ValueError, match="data worker count 2, this run has 1"):
        config(data_shards, workers=1).build(tokenizer).load_state_dict(state)
    with pytest.raises(ValueError, match="world size 1, this run has 2"):
        config(data_shards, workers=1).build(tokenizer, rank=0, world_size=2).load_state_dict(state)


def test_ranks_get_different_data_and_shard_count_is_checked(data_shards, tokenizer):
    cfg = config(data_shards, workers=1)
    b0 = next(iter(cfg.build(tokenizer, rank=0, world_size=2)))
    b1 = next(iter(cfg.build(tokenizer, rank=1, world_size=2)))
    assert not torch.equal(b0.tokens, b1.tokens)
    with pytest.raises(ValueError, match="every worker needs at least one shard"):
        config(data_shards, workers=8).build(tokenizer, rank=0, world_size=2)


def test_valid_split_is_one_deterministic_pass(data_shards, tokenizer):
    cfg = config(data_shards, batch_size=1)
    a = list(cfg.build(tokenizer, split="valid"))
    b = list(cfg.build(tokenizer, split="valid"))
    assert a and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    # More ranks than valid shards still works: samples are dealt to ranks one by one.
    per_rank = [list(cfg.build(tokenizer, rank=r, world_size=4, split="valid")) for r in range(4)]
    assert sum(len(p) for p in per_rank) <= len(a) and all(per_rank[:2])


def caption_targets(batches, tokenizer) -> set[tuple[int, ...]]:
    """The target ids (without <eos>) of every whole document in the batches (the packer splits
    some documents across rows: those pieces start without <bos> or end without <eos>)."""
    lay, out = tokenizer.layout, set()
    for b in batches:
        for tokens, targets, docs in zip(b.tokens, b.targets, b.doc_ids):
            for d in docs.unique().tolist():
                inside = docs == d
                ids = targets[inside & (targets != -100)].tolist()
                if d >= 0 and ids and tokens[inside][0] == lay.bos_id and ids[-1] == lay.eos_id:
                    out.add(tuple(ids[:-1]))
    return out


def test_clips_with_references_train_on_each_of_their_captions(data_shards, demo_corpus_dir, tokenizer):
    rows = [json.loads(line) for line in (demo_corpus_dir / "train.jsonl").read_text().splitlines()]
    texts = {tuple(tokenizer.encode_text(r["text"])) for r in rows}
    references = {tuple(tokenizer.encode_text(c)) for r in rows for c in r["references"]}
    captions_only = TemplateConfig(p_caption=1.0, p_generate=0.0, p_text=0.0, p_audio=0.0, p_instruction=0.0)
    seen = caption_targets(islice(config(data_shards, seq_len=512, templates=captions_only).build(tokenizer), 12),
                           tokenizer)
    assert seen <= texts | references and seen & references and seen & texts
    only_text = replace(captions_only, use_references=False)
    seen = caption_targets(islice(config(data_shards, seq_len=512, templates=only_text).build(tokenizer), 12),
                           tokenizer)
    assert seen and seen <= texts


def test_a_single_caption_draws_no_random_number():
    """So data without references keeps the document stream it had before references existed."""
    rng, untouched = np.random.default_rng(5), np.random.default_rng(5)
    assert pick_caption(["only"], rng, TemplateConfig()) == "only"
    assert rng.random() == untouched.random()
    picks = {pick_caption(["a", "b", "c"], rng, TemplateConfig()) for _ in range(60)}
    assert picks == {"a", "b", "c"}
    assert pick_caption(["a", "b"], rng, TemplateConfig(use_references=False)) == "a"
