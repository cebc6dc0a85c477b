"""Manifest -> WebDataset shards: read back with plain webdataset, bad inputs reported, resume."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.data.manifest import ManifestError, read_manifest
from mmtok.data.shard import ShardConfig, shard_manifest
from mmtok.data.stream import resolve_shards


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_shards_read_back_with_webdataset(data_shards, demo_corpus_dir, tokenizer):
    import webdataset as wds

    urls = resolve_shards(data_shards / "shards.jsonl#train")
    items = read_manifest(demo_corpus_dir / "train.jsonl")
    index = [r for r in read_jsonl(data_shards / "shards.jsonl") if r["split"] == "train"]
    assert [data_shards / r["url"] for r in index] == [type(data_shards)(u) for u in urls]
    assert len(urls) >= 4 and all(r["samples"] <= 2 for r in index)
    assert sum(r["samples"] for r in index) == len(items)
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())
    assert len(samples) == len(items)
    by_source = {s["json"]["source"]: s for s in samples}
    for item in items:
        s = by_source[item["audio"]]
        assert "." not in s["__key__"]
        expected = tokenizer.encode_audio(item["audio"])  # the oracle: the tokenizer itself
        assert s["codes.npy"].dtype == np.int16 and s["codes.npy"].shape == expected.codes.shape
        np.testing.assert_array_equal(s["codes.npy"], expected.codes)
        assert s["txt"] == item["text"]
        meta = s["json"]
        assert meta["n_samples"] == expected.n_samples and meta["sample_rate"] == expected.sample_rate
        assert meta["codec"] == expected.codec and meta["codebooks"] == expected.n_codebooks
        assert meta["layout_hash"] == tokenizer.layout.hash
        assert abs(meta["duration"] - expected.duration) < 1e-6
        assert meta["instrument"] == item["instrument"] and meta["key"] == item["key"]  # manifest fields kept


@pytest.fixture
def bad_manifest(tmp_path, real_audio_files):
    wav, sr = sf.read(real_audio_files[0], dtype="float32")
    good = [str(p) for p in real_audio_files[:3]]
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio at all" * 100)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), sr)
    sf.write(tmp_path / "short.wav", wav[: sr // 10], sr)
    nan = wav.copy()
    nan[sr : sr + 50] = np.nan
    sf.write(tmp_path / "nan.wav", nan, sr, subtype="FLOAT")
    bad = {"garbage.wav": "unreadable", "empty.wav": "empty", "short.wav": "too short", "nan.wav": "NaN",
           "missing.wav": "not found"}  # fmt: skip
    rows = [{"audio": good[0], "text": "first good clip"}]
    rows += [{"audio": name, "text": f"bad {name}", "id": name} for name in bad]  # relative paths
    rows += [{"audio": g, "text": f"good clip {i}"} for i, g in enumerate(good[1:])]
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, bad


def test_bad_inputs_are_skipped_and_reported(bad_manifest, tokenizer_dir, tmp_path):
    import webdataset as wds

    manifest, bad = bad_manifest
    out = tmp_path / "shards"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # in-process sharding (workers=1) leaves the caller's threads alone (the demo trains next)
        summary = shard_manifest(manifest, tokenizer_dir, out, cfg=ShardConfig(max_samples=3), progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert summary["samples"] == 3 and summary["skipped"] == len(bad)
    report = read_jsonl(out / "mixed-report.jsonl")
    assert len(report) == len(bad)
    for entry in report:
        name = entry["audio"].rsplit("/", 1)[-1]
        assert bad[name].lower() in entry["reason"].lower(), entry
        assert entry["manifest"] == str(manifest) and entry["line"] >= 2
    texts = [s["txt"] for s in wds.WebDataset(resolve_shards(out / "shards.jsonl"), shardshuffle=False,
                                              empty_check=False).decode()]  # fmt: skip
    assert texts == ["first good clip", "good clip 0", "good clip 1"]
    assert not list(out.glob("*.tmp")) and not list(out.glob("_parts/*.tmp"))


def test_resume_redoes_only_missing_shards(data_shards, demo_corpus_dir, tokenizer_dir, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(data_shards, out)
    victim = out / "train-000001.tar"
    original = victim.read_bytes()
    victim.unlink()
    (out / "train-000002.tar.tmp").write_bytes(b"half-written by a killed job")
    summary = shard_manifest(demo_corpus_dir / "train.jsonl", tokenizer_dir, out, cfg=ShardConfig(max_samples=2),
                             progress=False)  # fmt: skip
    n = len(resolve_shards(out / "shards.jsonl#train"))
    assert summary["reused"] == n - 1 and summary["shards"] == n
    assert victim.read_bytes() == original  # deterministic: the redone shard is byte-identical
    assert {r["split"] for r in read_jsonl(out / "shards.jsonl")} == {"train", "valid"}  # other split kept


def test_manifest_errors_name_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "ok"}\n{"audio": "b.wav"}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: missing or empty string field 'text'"):
        read_manifest(path)
    path.write_text('{"audio": "a.wav", "text": "ok"}\nnot json\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not valid JSON"):
        read_manifest(path)
    path.write_text('{"audio": "a.wav", "text": "ok", "references": ["fine"]}\n'
                    '{"audio": "b.wav", "text": "ok", "references": [1, 2]}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: 'references' must be a string or a list of strings"):
        read_manifest(path)


def test_cli_shard(bad_manifest, tokenizer_dir, tmp_path, capsys):
    from mmtok.cli import main

    manifest, bad = bad_manifest
    assert main(["data", "shard", str(manifest), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path / "s"),
                 "--split", "mini", "--max-samples", "2", "--include-audio"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert '"samples": 3' in out and f"{len(bad)} input(s) skipped" in out
    import io

    import webdataset as wds

    first = next(iter(wds.WebDataset(str(tmp_path / "s" / "mini-000000.tar"), shardshuffle=False,
                                     empty_check=False)))  # fmt: skip
    stored, sr = sf.read(io.BytesIO(first["flac"]), dtype="int16")
    source, source_sr = sf.read(json.loads(first["json"])["source"], dtype="int16")
    assert sr == source_sr and np.array_equal(stored, source)  # lossless copy of the input
