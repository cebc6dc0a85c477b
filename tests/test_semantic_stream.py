"""The semantic stream in the one vocabulary: the layout's semantic block and its serialization,
a tokenizer built with the stream (`mmtok tokenizer build --semantic`) that loads in a fresh
process, shards that carry the ids (read back by webdataset itself), and training, captioning and
generation at tiny size with the stream on. Codec settings x stream: tests/test_codec_end_to_end.py."""

import json
import subprocess
import sys

import numpy as np
import pytest
import webdataset as wds

from mmtok import MultimodalTokenizer
from mmtok.cli import main
from mmtok.tokenizer.layout import Modality, VocabLayout
from mmtok.tokenizer.patterns import PATTERNS, PartialFrameError, flatten, unflatten
from tests.fixtures.training import REPO, subprocess_env


def test_layout_semantic_block_and_rows():
    plain = VocabLayout(text_size=100, n_codebooks=2, codebook_size=64)
    assert "n_semantic" not in plain.to_dict()  # a layout without the stream hashes as it always did
    lay = VocabLayout(text_size=100, n_codebooks=2, codebook_size=64, n_semantic=16)
    assert lay.hash != plain.hash and VocabLayout.from_dict({**lay.to_dict(), "hash": lay.hash}) == lay
    assert lay.semantic_base == lay.scale_base and lay.audio_base == lay.semantic_base + 16
    assert lay.audio_end == plain.audio_end + 16 and lay.rows_per_frame == 3 and plain.rows_per_frame == 2
    sem = lay.semantic_ids(np.array([0, 15]))
    assert (lay.modality_of(sem) == Modality.AUDIO).all() and lay.is_semantic(sem).all()
    assert lay.row_of(np.array([*sem, lay.audio_base, lay.audio_base + 64, 5])).tolist() == [0, 0, 1, 2, -1]
    with pytest.raises(ValueError, match="out of range"):
        lay.semantic_ids(np.array([16]))
    with pytest.raises(ValueError, match="no semantic block"):
        plain.semantic_ids(np.array([0]))

    rng = np.random.default_rng(0)
    for t in (1, 2, 5):
        rows = np.concatenate([lay.semantic_ids(rng.integers(0, 16, (1, t))), lay.audio_ids(rng.integers(0, 64, (2, t)))])
        for pattern in PATTERNS:  # the semantic id is one more row under every pattern
            stream = flatten(rows, pattern)
            np.testing.assert_array_equal(unflatten(stream, 3, pattern, lay), rows)
        if t > 1:
            with pytest.raises(PartialFrameError, match="row"):
                unflatten(np.roll(flatten(rows, "frame_major"), 1), 3, "frame_major", lay)


def test_tokenizer_with_the_stream_round_trips_and_loads_in_a_fresh_process(
        semantic_tokenizer_dir, tokenizer_dir, real_audio_files, capsys, tmp_path):
    import shutil

    tok = MultimodalTokenizer.from_pretrained(semantic_tokenizer_dir)
    plain = MultimodalTokenizer.from_pretrained(tokenizer_dir)  # same codec and text, no stream
    f = real_audio_files[0]
    codes = tok.encode_audio(f)
    k, t = codes.n_codebooks, codes.n_frames
    assert codes.semantic.shape == (t,) and codes.semantic.max() < 16 and len(np.unique(codes.semantic)) > 1
    np.testing.assert_array_equal(codes.semantic, tok.semantic.encode(f, n_frames=t).numpy())
    np.testing.assert_array_equal(codes.codes, plain.encode_audio(f).codes)  # the stream leaves the codes alone

    ids = np.asarray(tok.codes_to_ids(codes))
    assert len(ids) == 2 + t * (k + 1) and len(plain.codes_to_ids(plain.encode_audio(f))) == 2 + t * k
    assert tok.config.semantic_placement == "prefix"  # the default: the clip's ids, then its codes
    assert tok.layout.is_semantic(ids[1 : 1 + t]).all() and not tok.layout.is_semantic(ids[1 + t :]).any()
    back = tok.ids_to_codes(ids)
    np.testing.assert_array_equal(back.codes, codes.codes)
    np.testing.assert_array_equal(back.semantic, codes.semantic)
    wav, _ = tok.decode_audio(ids)  # decoding ignores the semantic ids
    np.testing.assert_array_equal(wav, plain.decode_audio(plain.ids_to_codes(plain.codes_to_ids(codes)))[0])
    assert tok.audio_tokens_per_second == pytest.approx(tok.frame_rate * (k + 1))
    codes.semantic = None
    with pytest.raises(ValueError, match="no semantic ids"):
        tok.codes_to_ids(codes)

    script = ("import sys, json; from mmtok import MultimodalTokenizer as M; t = M.from_pretrained(sys.argv[1]); "
              "print(json.dumps(t.codes_to_ids(t.encode_audio(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", script, str(semantic_tokenizer_dir), str(f)], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == ids.tolist()

    capsys.readouterr()  # (the session fixture's build output)
    assert main(["tokenizer", "inspect", str(semantic_tokenizer_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    a, b = info["ranges"]["semantic"]
    assert b - a == 16 and info["semantic"]["n_clusters"] == 16
    assert info["semantic"]["features"]["parts"] == ["chroma", "flux"]
    assert info["semantic"]["features"]["frame_rate"] == tok.frame_rate  # fitted at the codec's frame rate

    broken = tmp_path / "tok"
    shutil.copytree(semantic_tokenizer_dir, broken)
    weights = broken / "semantic" / "semantic.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="semantic.safetensors: checksum"):
        MultimodalTokenizer.from_pretrained(broken)


def test_the_two_placements_hold_the_same_ids_in_their_orders(semantic_tokenizer_dir, fitted_codec_dir, caption_file,
                                                               real_audio_files, capsys, tmp_path):
    from dataclasses import replace

    from mmtok.generate.constraints import AudioConstraint

    prefix = MultimodalTokenizer.from_pretrained(semantic_tokenizer_dir)  # built with the default placement
    capsys.readouterr()
    assert main(["tokenizer", "build", "--text", str(caption_file), "--codec", str(fitted_codec_dir),
                 "--vocab-size", "512", "--out", str(tmp_path / "tok"), "--semantic",
                 str(semantic_tokenizer_dir / "semantic"), "--semantic-placement", "frame"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["semantic"]["placement"] == "frame"
    frame = MultimodalTokenizer.from_pretrained(tmp_path / "tok")
    assert prefix.config.semantic_placement == "prefix" and frame.config.semantic_placement == "frame"
    assert prefix.layout == frame.layout  # the placement is serialization, not vocabulary: shards serve both

    codes = prefix.encode_audio(real_audio_files[0])
    k, t, lay = codes.n_codebooks, codes.n_frames, prefix.layout
    for base in (prefix, frame):
        placement = base.config.semantic_placement
        for pattern in PATTERNS:
            tok = MultimodalTokenizer(base.text, lay, replace(base.config, serialization=pattern),
                                      base.codec_dir, semantic=base.semantic)
            ids = np.asarray(tok.codes_to_ids(codes))
            assert len(ids) == 2 + t * (k + 1)
            rows = lay.row_of(ids[1:-1])
            if placement == "prefix":  # the clip's plan first, then its codes alone under the pattern
                np.testing.assert_array_equal(ids[1 : 1 + t], lay.semantic_ids(codes.semantic))
                assert (rows[t:] > 0).all()
            elif pattern == "frame_major":  # each frame opens with its id
                np.testing.assert_array_equal(rows, np.tile(np.arange(k + 1), t))
            np.testing.assert_array_equal(np.sort(ids), np.sort(prefix.codes_to_ids(codes)))  # same ids, other order
            back = tok.ids_to_codes(ids)
            np.testing.assert_array_equal(back.codes, codes.codes)
            np.testing.assert_array_equal(back.semantic, codes.semantic)
            constraint = AudioConstraint(lay, n_frames=t, pattern=pattern, semantic_placement=placement)
            assert constraint.max_new_tokens == len(ids) - 1  # what generation writes after <soa> is exactly this
            assert all(bool(constraint.allowed(i, None)[x]) for i, x in enumerate(ids[1:]))

    ids = prefix.codes_to_ids(codes)
    late = [*ids[:1], *ids[2 : 2 + t], ids[1], *ids[2 + t :]]  # one semantic id moved after the codes began
    with pytest.raises(PartialFrameError, match="after the codes began"):
        prefix.ids_to_codes(late)
    with pytest.raises(PartialFrameError, match=f"{t} semantic ids before {t - 1} frames"):
        prefix.ids_to_codes([*ids[: -1 - k], ids[-1]])  # the last frame's codes cut off
    with pytest.raises(ValueError, match="need a fixed n_frames"):
        AudioConstraint(lay, semantic_placement="prefix")
    with pytest.raises(ValueError, match="unknown semantic placement"):
        AudioConstraint(lay, n_frames=2, semantic_placement="first")


def test_shards_carry_semantic_ids_that_webdataset_reads(semantic_tokenizer_dir, clip_manifest, tmp_path):
    from mmtok.data.shard import shard_manifest
    from mmtok.data.stream import decode_sample

    tok = MultimodalTokenizer.from_pretrained(semantic_tokenizer_dir)
    shard_manifest(clip_manifest, semantic_tokenizer_dir, tmp_path, split="train", progress=False)
    urls = sorted(str(p) for p in tmp_path.glob("train-*.tar"))
    seen = 0
    for raw in wds.WebDataset(urls, shardshuffle=False):  # webdataset's own reader and grouping
        meta = json.loads(raw["json"])
        semantic = np.load(__import__("io").BytesIO(raw["semantic.npy"]), allow_pickle=False)
        expected = tok.encode_audio(meta["source"])
        assert semantic.dtype == np.int16 and semantic.shape == (meta["frames"],)
        np.testing.assert_array_equal(semantic, expected.semantic)
        sample = decode_sample(raw, tok.layout.hash)
        np.testing.assert_array_equal(sample.codes.semantic, expected.semantic)
        assert tok.codes_to_ids(sample.codes) == tok.codes_to_ids(expected)
        seen += 1
    assert seen == len(clip_manifest.read_text().splitlines())


@pytest.fixture(scope="module")
def semantic_run(semantic_tokenizer_dir, clip_manifest, tmp_path_factory):
    """A tiny model trained 12 steps on shards made with the semantic tokenizer."""
    from mmtok.config import load_config
    from mmtok.data.shard import shard_manifest
    from mmtok.training.loop import train

    root = tmp_path_factory.mktemp("semantic_run")
    shard_manifest(clip_manifest, semantic_tokenizer_dir, root / "shards", split="train", progress=False)
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"tokenizer={semantic_tokenizer_dir}", f"data.train_shards={root / 'shards' / 'shards.jsonl'}#train",
        "data.workers=0", "data.shuffle_buffer=4", f"train.out_dir={root / 'run'}", "train.max_steps=12",
        "train.checkpoint_interval=12", "train.eval_interval=0", "train.log_interval=4", "wandb.mode=disabled",
        "model.attention=sdpa",
    ])
    metrics = train(cfg)
    assert np.isfinite(metrics["loss"])
    return root / "run"


def test_training_captioning_and_generation_with_the_stream(semantic_run, real_audio_files, capsys):
    from mmtok.checkpoint import load_for_inference
    from mmtok.generate.music import generate_codes_batch
    from mmtok.generate.sampling import GenerationConfig

    assert main(["caption", "--checkpoint", str(semantic_run), "--json", "--max-new-tokens", "12",
                 *map(str, real_audio_files[:2])]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["audio"] for r in rows] == [str(f) for f in real_audio_files[:2]]
    assert all(isinstance(r["caption"], str) for r in rows)

    model, _, tok = load_for_inference(semantic_run)
    assert tok.layout.n_semantic == 16
    (codes,) = generate_codes_batch(model, tok, ["a calm chorale on piano"], 0.4, GenerationConfig(top_k=20, seed=0))
    assert codes.semantic.shape == (codes.n_frames,) == (10,)  # 0.4 s at 25 Hz, a semantic id per frame
    assert 0 <= codes.semantic.min() and codes.semantic.max() < 16
    wav, sr = tok.decode_audio(codes)
    assert np.isfinite(wav).all() and sr == tok.sample_rate
