"""Resuming the data stream on another world size: the rest of the epoch is re-split over the
new ranks and workers; no sample of it is read twice and none is left out."""

import io
from itertools import islice

import pytest
import torch

from mmtok.data.loader import DataConfig
from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards, resplit_streams


def roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def all_keys(urls, cfg):
    return [s.key for s in ShardStream(urls, cfg, 0, 1, 0, 1)]


@pytest.mark.parametrize(("old", "new"), [((2, 1), (1, 1)), ((1, 2), (2, 2)), ((2, 2), (3, 1)), ((1, 1), (2, 1))])
def test_resplit_streams_read_every_sample_of_the_epoch_once(data_shards, old, new):
    urls = resolve_shards(str(data_shards / "shards.jsonl#train"))
    cfg = StreamConfig(seed=5, shuffle_buffer=3, epochs=1)
    everything = all_keys(urls, cfg)
    assert len(everything) == len(set(everything)) > 8
    (ow, oworkers), (nw, nworkers) = old, new
    seen, states = [], {}
    for r in range(ow):
        for w in range(oworkers):
            stream = ShardStream(urls, cfg, r, ow, w, oworkers)
            it = iter(stream)
            seen += [s.key for s in islice(it, 1 + 2 * r + w)]  # uneven progress, mid-shard, buffers full
            states[(r, w)] = stream.state_dict()
    assert sum(len(s["buffer"]) for s in states.values()) > 0
    new_states = resplit_streams(states, urls, cfg, ow, oworkers, nw, nworkers)
    for (r, w), state in sorted(new_states.items()):
        stream = ShardStream(urls, cfg, r, nw, w, nworkers)
        stream.load_state_dict(state)
        seen += [s.key for s in stream]
    assert sorted(seen) == sorted(everything)  # each sample exactly once: none repeated, none skipped


def test_resplit_streams_twice_and_into_the_next_epoch(data_shards):
    """A re-split run re-split again (2 -> 1 -> 2 ranks): still every sample of epoch 0 once, then
    epoch 1 in full."""
    urls = resolve_shards(str(data_shards / "shards.jsonl#train"))
    cfg = StreamConfig(seed=1, shuffle_buffer=2, epochs=2)
    per_epoch = len(all_keys(urls, StreamConfig(seed=1, shuffle_buffer=2, epochs=1)))
    seen, states = [], {}
    for r in range(2):
        stream = ShardStream(urls, cfg, r, 2, 0, 1)
        seen += [s.key for s in islice(iter(stream), 2)]
        states[(r, 0)] = stream.state_dict()
    mid = resplit_streams(states, urls, cfg, 2, 1, 1, 1)
    stream = ShardStream(urls, cfg, 0, 1, 0, 1)
    stream.load_state_dict(mid[(0, 0)])
    seen += [s.key for s in islice(iter(stream), 3)]
    again = resplit_streams({(0, 0): stream.state_dict()}, urls, cfg, 1, 1, 2, 1)
    for r in range(2):
        s2 = ShardStream(urls, cfg, r, 2, 0, 1)
        s2.load_state_dict(again[(r, 0)])
        seen += [s.key for s in s2]
    assert len(seen) == 2 * per_epoch
    assert sorted(set(seen)) == sorted(all_keys(urls, StreamConfig(seed=1, shuffle_buffer=2, epochs=1)))
    assert all(seen.count(k) == 2 for k in set(seen))  # epoch 0 once (re-split twice) + epoch 1 once


def documents(batches, bos_id) -> int:
    return sum(int(((b.tokens == bos_id) & (b.positions == 0)).sum()) for b in batches)


@pytest.mark.parametrize(("old_world", "new_world"), [(2, 1), (1, 2)])
def test_loader_resumes_on_another_world_size_without_losing_documents(data_shards, tokenizer, old_world, new_world):
    """Whole loaders (stream, shuffle buffer, packer pool) through a checkpoint round trip: every
    sample of the epoch becomes exactly one document, before or after the re-split."""
    cfg = DataConfig(train_shards=str(data_shards / "shards.jsonl#train"), seq_len=192, batch_size=1,
                     shuffle_buffer=3, seed=3, workers=0, epochs=1, pack_pool=4)  # fmt: skip
    bos = tokenizer.layout.bos_id
    expected = documents(cfg.build(tokenizer), bos)
    assert expected == len(all_keys(resolve_shards(cfg.train_shards), cfg.stream_config()))
    count, states = 0, []
    for r in range(old_world):
        loader = cfg.build(tokenizer, rank=r, world_size=old_world)
        count += documents(islice(loader, 2 + r), bos)
        states.append(roundtrip(loader.state_dict()))
    for r in range(new_world):
        loader = cfg.build(tokenizer, rank=r, world_size=new_world)
        loader.load_state_dict({"per_rank": states})
        count += documents(loader, bos)
    assert count == expected


def test_same_world_size_per_rank_states_resume_exactly(data_shards, tokenizer):
    cfg = DataConfig(train_shards=str(data_shards / "shards.jsonl#train"), seq_len=192, batch_size=2,
                     shuffle_buffer=3, seed=3, workers=0)  # fmt: skip
    full = [list(islice(cfg.build(tokenizer, rank=r, world_size=2), 5)) for r in range(2)]
    states = []
    for r in range(2):
        loader = cfg.build(tokenizer, rank=r, world_size=2)
        list(islice(loader, 2))
        states.append(roundtrip(loader.state_dict()))
    for r in range(2):
        loader = cfg.build(tokenizer, rank=r, world_size=2)
        loader.load_state_dict({"per_rank": states})
        for a, b in zip(islice(loader, 3), full[r][2:]):
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)


def test_sample_split_streams_are_not_resplit(data_shards):
    urls = resolve_shards(str(data_shards / "shards.jsonl#train"))
    with pytest.raises(ValueError, match="cannot be re-split"):
        resplit_streams({}, urls, StreamConfig(split_by="sample"), 2, 1, 1, 1)
