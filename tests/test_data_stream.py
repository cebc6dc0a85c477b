"""Streaming: rank/worker split covers an epoch exactly once, resampling, shuffling, corrupt data."""

import io
import shutil
import tarfile

import pytest

from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards


def all_keys(urls):
    import webdataset as wds  # the oracle: plain webdataset reading every shard

    return [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]


def test_ranks_x_workers_cover_epoch_exactly_once(data_shards):
    urls = resolve_shards(data_shards / "shards.jsonl#train")
    cfg = StreamConfig(seed=5, shuffle_buffer=3, epochs=1)
    seen = {}
    for rank in range(2):
        for worker in range(2):
            seen[rank, worker] = [s.key for s in ShardStream(urls, cfg, rank, 2, worker, 2)]
    flat = [k for keys in seen.values() for k in keys]
    assert sorted(flat) == sorted(all_keys(urls))  # each sample exactly once per epoch
    assert all(seen.values())
    # Two epochs: the second epoch covers everything once more, in another order.
    two = [s.key for s in ShardStream(urls, StreamConfig(seed=5, shuffle_buffer=3, epochs=2), 0, 1, 0, 1)]
    half = len(two) // 2
    assert sorted(two[:half]) != two[:half] or sorted(two[half:]) != two[half:]
    assert sorted(two) == sorted(all_keys(urls) * 2)


def test_sample_split_covers_epoch_with_few_shards(data_shards):
    urls = resolve_shards(data_shards / "shards.jsonl#train")[:3]  # fewer shards than 2 x 2
    cfg = StreamConfig(seed=1, shuffle_buffer=2, epochs=1, split_by="sample")
    seen = [[s.key for s in ShardStream(urls, cfg, r, 2, w, 2)] for r in range(2) for w in range(2)]
    assert sorted(k for keys in seen for k in keys) == sorted(all_keys(urls)) and all(seen)


def test_order_is_deterministic_given_seed(data_shards):
    urls = resolve_shards(data_shards / "shards.jsonl#train")
    run = lambda seed: [s.key for s in ShardStream(urls, StreamConfig(seed=seed, shuffle_buffer=4, epochs=1))]  # noqa: E731
    assert run(1) == run(1) and run(1) != run(2) and sorted(run(1)) == sorted(run(2))


def test_too_few_shards_fail_fast_unless_resampled(data_shards):
    urls = resolve_shards(data_shards / "shards.jsonl#train")[:3]
    with pytest.raises(ValueError, match=r"3 shard\(s\) for 2 rank\(s\) x 2 worker\(s\)"):
        ShardStream(urls, StreamConfig(), 0, 2, 0, 2)
    cfg = StreamConfig(seed=0, resampled=True, epoch_samples=12, epochs=2, shuffle_buffer=0)
    keys = [s.key for s in ShardStream(urls, cfg, 1, 2, 1, 2)]
    assert len(keys) == 2 * 12 // 4  # epoch_samples is over all ranks x workers
    assert set(keys) <= set(all_keys(urls))


def test_pipe_urls(data_shards):
    url = resolve_shards(data_shards / "shards.jsonl#train")[0]
    keys = [s.key for s in ShardStream([f"pipe:cat {url}"], StreamConfig(shuffle_buffer=0, epochs=1))]
    assert keys == all_keys([url])


def _truncate_inside_second_sample(src, dst):
    with tarfile.open(src) as tar:
        members = tar.getmembers()
    keys = sorted({m.name.split(".")[0] for m in members})
    second_codes = next(m for m in members if m.name.startswith(keys[1]) and m.name.endswith("codes.npy"))
    data = src.read_bytes()
    dst.write_bytes(data[: second_codes.offset_data + 100])
    return keys


def _corrupt_codes_of_first_sample(src, dst):
    with tarfile.open(src) as tar, tarfile.open(dst, "w") as out:
        members = tar.getmembers()
        first = members[0].name.split(".")[0]
        for m in members:
            data = tar.extractfile(m).read()
            if m.name == f"{first}.codes.npy":
                data = b"\x93NUMPY garbage" + data[20:]
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    return first


def test_truncated_tar_and_corrupt_sample_are_counted_and_skipped(data_shards, tmp_path, caplog):
    urls = resolve_shards(data_shards / "shards.jsonl#train")
    work = tmp_path / "s"
    work.mkdir()
    copies = [shutil.copy(u, work) for u in urls]
    copies = [type(work)(c) for c in copies]
    truncated_keys = _truncate_inside_second_sample(type(work)(urls[0]), copies[0])
    bad_key = _corrupt_codes_of_first_sample(type(work)(urls[1]), copies[1])
    stream = ShardStream([str(c) for c in copies], StreamConfig(shuffle_buffer=0, epochs=1))
    with caplog.at_level("WARNING", logger="mmtok.data.stream"):
        keys = [s.key for s in stream]
    expected = [k for k in all_keys(urls) if k not in (truncated_keys[1], bad_key)]
    assert sorted(keys) == sorted(expected)
    assert stream.corrupt >= 2  # the broken tar and the undecodable sample
    assert bad_key in caplog.text and "cannot decode" in caplog.text and "broken shard" in caplog.text
