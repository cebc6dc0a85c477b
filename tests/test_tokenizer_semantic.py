"""Semantic tokens (mmtok.tokenizer.semantic): deterministic ids, k-means that finds planted
clusters, save/load across processes, features that read pitch and beat, and the pluggable path
through a tiny randomly initialised HuBERT (no download)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.tokenizer.semantic import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    HFLayerFeatures,
    SemanticTokenizer,
    SpectralFeatures,
    id_rhythm_features,
    kmeans,
)

SR = 16000


def chord_clip(seed: int, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    """Four notes of random pitch, one every 0.5 s, each a decaying harmonic tone: (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.5):
        f0 = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 4.0), 0.0)
        out += env * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    return (0.1 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="module")
def clips():
    return [(chord_clip(i), SR) for i in range(6)]


@pytest.fixture(scope="module")
def fitted(clips):
    return SemanticTokenizer(SpectralFeatures(("chroma", "flux")), n_clusters=16, iters=10).fit(clips)


def test_ids_are_deterministic_for_a_fixed_fit_and_aligned_with_codec_frames(clips, fitted):
    wav, sr = clips[0]
    ids = fitted.encode(wav, sr)
    assert ids.dtype == torch.int64 and ids.shape == (math.ceil(len(wav) * 25 / sr),)  # 25 Hz: the demo codec's
    assert 0 <= int(ids.min()) and int(ids.max()) < 16
    assert torch.equal(ids, fitted.encode(wav, sr))
    again = SemanticTokenizer(SpectralFeatures(("chroma", "flux")), n_clusters=16, iters=10).fit(clips)
    assert torch.equal(again.centres, fitted.centres)
    assert torch.equal(again.encode(wav, sr), ids)
    stereo_24k = np.stack([wav, wav]).repeat(3, axis=1)[:, ::2]  # (2, n) at 24 kHz: any rate and channel count
    assert fitted.encode(stereo_24k, 24000).shape == ids.shape
    at75 = SemanticTokenizer(SpectralFeatures(("chroma",), frame_rate=75.0), n_clusters=4, iters=2).fit(clips)
    assert at75.encode(wav, sr).shape == (math.ceil(len(wav) * 75 / sr),)  # encodec_24khz's frame rate


def test_kmeans_recovers_planted_clusters():
    gen = torch.Generator().manual_seed(1)
    planted = 10 * torch.randn(8, 5, generator=gen)
    labels = torch.arange(8).repeat_interleave(100)
    x = planted[labels] + 0.1 * torch.randn(800, 5, generator=gen)
    perm = torch.randperm(800, generator=gen)  # shuffled
    x, labels = x[perm], labels[perm]
    centres = kmeans(x, 8, iters=20, seed=0)
    ids = torch.cdist(x, centres).argmin(1)
    for c in range(8):  # each planted cluster is exactly one found cluster
        assert torch.unique(ids[labels == c]).numel() == 1
    assert torch.unique(ids).numel() == 8
    nearest = torch.cdist(planted, centres).min(1).values
    assert float(nearest.max()) < 0.1


def test_save_load_in_a_fresh_process_gives_the_same_ids(clips, fitted, tmp_path):
    fitted.save(tmp_path / "sem")
    assert (tmp_path / "sem" / WEIGHTS_FILE).is_file()
    cfg = json.loads((tmp_path / "sem" / CONFIG_FILE).read_text())
    assert cfg["features"]["kind"] == "spectral" and cfg["features"]["parts"] == ["chroma", "flux"]
    assert cfg["n_clusters"] == 16 and cfg["frame_rate"] == 25.0 and cfg["fit"]["clips"] == 6
    wav, sr = clips[3]
    sf.write(tmp_path / "clip.wav", wav, sr)
    code = ("import sys, json; from mmtok.tokenizer.semantic import SemanticTokenizer; "
            "t = SemanticTokenizer.load(sys.argv[1]); print(json.dumps(t.encode(sys.argv[2]).tolist()))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sem"), str(tmp_path / "clip.wav")],
                         capture_output=True, text=True, check=True)
    # the file holds PCM16: its ids equal the in-memory clip's up to quantisation, and exactly
    # those of the same file encoded here
    assert json.loads(out.stdout) == fitted.encode(tmp_path / "clip.wav").tolist()
    assert torch.equal(SemanticTokenizer.load(tmp_path / "sem").encode(wav, sr), fitted.encode(wav, sr))


def test_features_read_pitch_class_and_beat():
    t = np.arange(SR) / SR
    a4 = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    chroma = SpectralFeatures(("chroma",))(a4, SR)
    assert chroma.shape == (25, 12) and int(chroma.mean(0).argmax()) == 9  # A
    ids = np.tile([0] * 9 + [1], 12)  # a change every 10 frames: 150 BPM at 25 Hz
    r = id_rhythm_features(ids, 25.0)
    lags = np.arange(7, 38 + 1)  # 40-200 BPM at 25 Hz
    assert len(r) == 2 * len(lags)
    assert lags[int(np.argmax(r[: len(lags)]))] in (10, 20, 30)
    assert r[: len(lags)][lags == 10][0] > 0.9


def test_hubert_layer_features_through_kmeans_to_ids(clips, tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(8, 8, 8), conv_kernel=(10, 8, 8), conv_stride=(5, 8, 8),
                          num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    model = HubertModel(config)  # random weights: exercises the path, not the quality
    features = HFLayerFeatures(model, layer=1)
    assert features.frame_rate == 50.0 and features.groups == (16,)
    tok = SemanticTokenizer(features, n_clusters=4, frame_rate=25.0, iters=5).fit(clips)
    wav, sr = clips[0]
    ids = tok.encode(wav, sr)
    assert ids.shape == (math.ceil(len(wav) * 25 / sr),) and int(ids.max()) < 4
    tok.save(tmp_path / "hub")
    assert json.loads((tmp_path / "hub" / CONFIG_FILE).read_text())["features"]["layer"] == 1
    assert torch.equal(SemanticTokenizer.load(tmp_path / "hub", features=features).encode(wav, sr), ids)
    with pytest.raises(ValueError, match="unnamed transformers model"):
        SemanticTokenizer.load(tmp_path / "hub")


def test_a_feature_extractor_must_follow_the_protocol():
    with pytest.raises(TypeError, match="not a FrameFeatures"):
        SemanticTokenizer(lambda wav, sr: wav)
    with pytest.raises(RuntimeError, match="not fitted"):
        SemanticTokenizer().encode(np.zeros(SR, np.float32), SR)
    with pytest.raises(ValueError, match="choose from"):
        SpectralFeatures(("pitch",))
