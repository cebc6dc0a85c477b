"""The loudness rule: one gain per clip, the same codes at any input level, silence left alone,
stored in the tokenizer directory, and applied by the one function sharding and captioning use."""

import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from mmtok import MultimodalTokenizer
from mmtok.data.shard import shard_manifest
from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards
from mmtok.generate.captioner import CaptionConfig, Captioner
from mmtok.model.config import ModelConfig
from mmtok.tokenizer.loudness import LoudnessRule, apply_gain

GAINS = (0.1, 0.3, 0.9)  # the first fixture clip at about -46, -37 and -27 LUFS


def test_the_rule_reaches_the_target_by_bs1770_and_keeps_the_peak_in_check(real_clip):
    wav, sr = real_clip
    rule = LoudnessRule("lufs", -23.0)
    for g in GAINS:
        gained = apply_gain(wav[None] * g, rule.gain_db(wav[None] * g, sr))
        assert pyloudnorm.Meter(sr).integrated_loudness(gained[0].astype(np.float64)) == pytest.approx(-23.0, abs=0.01)
    loud = LoudnessRule("lufs", -3.0)  # a target the peak guard cannot reach
    out = apply_gain(wav[None], loud.gain_db(wav[None], sr))
    assert 20 * np.log10(np.abs(out).max()) == pytest.approx(-1.0, abs=1e-4)
    rms = LoudnessRule("rms", -20.0)
    out = apply_gain(wav[None] * 0.2, rms.gain_db(wav[None] * 0.2, sr))
    assert 20 * np.log10(np.sqrt(np.mean(out**2))) == pytest.approx(-20.0, abs=0.01)


def test_silence_and_near_silence_are_not_blown_up():
    sr, rule = 16000, LoudnessRule("lufs", -23.0)
    assert rule.gain_db(np.zeros((1, 3 * sr), np.float32), sr) == 0.0
    noise = np.random.default_rng(0).standard_normal((1, 3 * sr)).astype(np.float32)
    assert rule.gain_db(noise * 1e-5, sr) == 0.0  # -100 dB: below the silence gate, left as is
    assert rule.gain_db(noise * 3e-4, sr) == pytest.approx(30.0)  # ~-70 LUFS: raised by at most 30 dB
    assert rule.gain_db(np.zeros((1, 100), np.float32), sr) == 0.0  # shorter than a gating block
    assert np.isfinite(rule.gain_db(noise[:, :1000] * 0.1, sr))  # short: RMS fallback, finite
    with pytest.raises(ValueError, match="loudness mode 'loud'"):
        LoudnessRule.parse("loud:-20")


def test_the_same_audio_at_three_levels_gives_the_same_codes(tokenizer, real_clip):
    wav, sr = real_clip
    assert tokenizer.loudness == LoudnessRule("lufs", -23.0)  # the default rule of a built tokenizer
    codes = [tokenizer.encode_audio(wav * g, sr) for g in GAINS]
    for c in codes[1:]:
        np.testing.assert_array_equal(c.codes, codes[0].codes)
    raw = [tokenizer.encode_audio(wav * g, sr, normalize=False) for g in GAINS]
    assert any((r.codes != raw[0].codes).any() for r in raw[1:])  # without the rule the level shows
    # Decoding divides the gain out: the round trip keeps the input's level.
    for g, c in zip(GAINS, codes):
        out, _ = tokenizer.decode_audio(c)
        ratio = np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(tokenizer.decode_audio(codes[0])[0] ** 2))
        assert ratio == pytest.approx(g / GAINS[0], rel=1e-3)


def test_the_rule_is_stored_in_and_read_from_the_tokenizer_directory(fitted_codec_dir, caption_file, tmp_path,
                                                                       encodec_repository):
    out = tmp_path / "tok"
    MultimodalTokenizer.build([caption_file], codec=str(fitted_codec_dir), out=out, vocab_size=400,
                              loudness="rms:-18")
    stored = json.loads((out / "tokenizer.json").read_text())["loudness"]
    assert stored["mode"] == "rms" and stored["target_db"] == -18.0
    assert MultimodalTokenizer.from_pretrained(out).loudness == LoudnessRule("rms", -18.0)
    # encodec_48khz scales each 1 s segment itself: its tokenizers take no second normalisation.
    t48 = MultimodalTokenizer.build([caption_file], codec="encodec_48khz", bandwidth=3.0, out=tmp_path / "t48",
                                    vocab_size=400, repository=encodec_repository)
    assert t48.loudness.mode == "none"
    # A directory written before the rule existed reads as "none": its codes do not change.
    cfg = json.loads((out / "tokenizer.json").read_text())
    del cfg["loudness"]
    (out / "tokenizer.json").write_text(json.dumps(cfg))
    assert MultimodalTokenizer.from_pretrained(out).loudness.mode == "none"


def test_sharding_and_captioning_apply_the_same_rule(tokenizer, tokenizer_dir, real_clip, tmp_path):
    wav, sr = real_clip
    rows = []
    for g in GAINS:
        path = tmp_path / f"clip_{g}.wav"
        sf.write(path, wav * g, sr, subtype="FLOAT")
        rows.append({"audio": str(path), "text": "a clip"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shard_manifest(manifest, tokenizer_dir, tmp_path / "shards", split="train")
    stream = ShardStream(resolve_shards(str(tmp_path / "shards" / "shards.jsonl#train")),
                         StreamConfig(shuffle_buffer=0, epochs=1))
    sharded = {s.meta["source"]: s for s in stream}
    direct = tokenizer.encode_audio(wav, sr)
    for r, g in zip(rows, GAINS):
        s = sharded[r["audio"]]
        np.testing.assert_array_equal(s.codes.codes, direct.codes)
        assert s.meta["gain_db"] == pytest.approx(direct.gain_db - 20 * np.log10(g), abs=1e-3)
    model = ModelConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=256).for_vocab(len(tokenizer)).build()
    captioner = Captioner(model, tokenizer, CaptionConfig(seconds=1.0))
    prompts = [captioner.encode(r["audio"]).codes for r in rows]
    for p in prompts[1:]:
        np.testing.assert_array_equal(p, prompts[0])
