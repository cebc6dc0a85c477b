"""Codecs against the real encodec package on the same weights: 24 kHz (mono) and 48 kHz
(stereo, per-segment scales) loaded offline from a local checkpoint directory, the fitted tiny
codec, resampling/mixing rules, chunked encoding seams, and the collapse guard."""

import hashlib
import os

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from mmtok import MultimodalTokenizer
from mmtok.tokenizer.audio_io import AudioSource, CodecInput
from mmtok.tokenizer.codec import CodecCollapseError, load_codec, load_fitted_codec, pretrained_available, sha256_file


def _oracle(name: str, repository, bandwidth: float):
    """encodec's own model on the same checkpoint file, loaded without mmtok."""
    from encodec import EncodecModel

    (ckpt,) = repository.glob(f"{name}-*.th")
    model = getattr(EncodecModel, f"encodec_model_{name.split('_')[1]}")(pretrained=False)
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    model.set_target_bandwidth(bandwidth)
    return model.eval()


@pytest.fixture(scope="module")
def excerpt(real_audio_files):
    wav, sr = sf.read(real_audio_files[4], dtype="float32")
    return wav[: 5 * sr], sr  # 5 s of real trumpet chorale, 24 kHz mono


@pytest.fixture(scope="module")
def tok24(encodec_repository, caption_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok24") / "tok"
    return MultimodalTokenizer.build([caption_file], codec="encodec_24khz", bandwidth=1.5, out=out,
                                     vocab_size=400, repository=encodec_repository)


@pytest.fixture(scope="module")
def tok48(encodec_repository, caption_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok48") / "tok"
    return MultimodalTokenizer.build([caption_file], codec="encodec_48khz", bandwidth=3.0, out=out,
                                     vocab_size=400, repository=encodec_repository)


def test_24khz_codes_and_decode_equal_encodec(tok24, encodec_repository, excerpt):
    wav, sr = excerpt
    model = _oracle("encodec_24khz", encodec_repository, 1.5)
    with torch.no_grad():
        (ref_codes, scale), = model.encode(torch.from_numpy(wav)[None, None])
        ref_wav = model.decode([(ref_codes, scale)])[0]
    codes = tok24.encode_audio(wav, sr, normalize=False)  # the codec's own codes: no loudness rule
    assert codes.codec == "encodec_24khz" and codes.n_samples == wav.size and codes.scales is None
    np.testing.assert_array_equal(codes.codes, ref_codes[0].numpy())
    ids = tok24.codes_to_ids(codes)
    assert len(ids) == 2 + 2 * 375 and tok24.layout.n_scale_tokens == 0
    out, out_sr = tok24.decode_audio(ids)
    assert out_sr == 24000
    np.testing.assert_array_equal(out, ref_wav[:, : out.shape[1]].numpy())


def _assert_equal_but_for_near_ties(model, x, frames, ours: np.ndarray, rtol: float = 1e-4):
    """Codes equal encodec's, except where its nearest codebook entry is a float tie: batching
    the segments (mmtok) instead of encoding them one by one (encodec) moves encoder outputs by
    ~1e-7, which can flip an argmin between two entries at (nearly) the same distance. For the
    first differing codebook of each such frame, both entries must be equally close to encodec's
    own residual (to float rounding); later codebooks of the frame follow from it."""
    theirs = torch.cat([c[0] for c, _ in frames], dim=1).numpy()  # (K, T)
    differ = np.argwhere(ours != theirs)
    assert len(differ) <= 0.01 * ours.size, f"{len(differ)} of {ours.size} codes differ"
    fps = frames[0][0].shape[-1]
    embed = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    for t in sorted(set(differ[:, 1].tolist())):
        q = int(differ[differ[:, 1] == t, 0].min())
        seg, j = divmod(t, fps)
        start = seg * model.segment_stride
        with torch.no_grad():
            emb = model.encoder(x[..., start : start + model.segment_length] / frames[seg][1].view(1, 1, 1))
        residual = emb[0, :, j] - sum(embed[k][theirs[k, t]] for k in range(q))
        d_ours, d_theirs = ((residual - embed[q][c]).pow(2).sum().item() for c in (ours[q, t], theirs[q, t]))
        # encodec's distance is r.r - 2 r.e + e.e: its rounding error scales with those terms
        scale = residual.pow(2).sum().item() + embed[q][theirs[q, t]].pow(2).sum().item()
        assert abs(d_ours - d_theirs) <= rtol * scale, (q, t, d_ours, d_theirs, scale)


def test_48khz_scales_keep_decode_equal_to_encodec(tok48, encodec_repository, excerpt):
    wav, sr = excerpt
    model = _oracle("encodec_48khz", encodec_repository, 3.0)
    # documented rule: resample, then mono -> stereo by duplication
    x = AF.resample(torch.from_numpy(wav), sr, 48000)[None].repeat(2, 1)[None]  # (1, 2, n)
    with torch.no_grad():
        frames = model.encode(x)  # encodec: one segment at a time
    codes = tok48.encode_audio(wav, sr)  # mmtok: the segments as one batch
    assert codes.n_samples == x.shape[-1] and codes.frames_per_segment == 150
    np.testing.assert_array_equal(codes.scales, torch.cat([s.view(1) for _, s in frames]).numpy())
    _assert_equal_but_for_near_ties(model, x, frames, codes.codes)
    # Decoding: encodec's own decode of the same codes and scales (its overlap-add output).
    sizes = [c.shape[-1] for c, _ in frames]
    ours = [(c[None], s) for c, (_, s) in zip(torch.from_numpy(codes.codes).split(sizes, dim=1), frames)]
    with torch.no_grad():
        ref_wav = model.decode(ours)[0]  # (2, >= n)
    ids = tok48.codes_to_ids(codes)
    layout = tok48.layout
    assert layout.n_scale_tokens == 256
    # each segment: 4 scale bytes (its float32's IEEE bytes) then its frames
    assert all(layout.scale_base <= i < layout.audio_base for i in ids[1:5])
    assert len(ids) == 2 + 4 * len(frames) + codes.codes.size
    back = tok48.ids_to_codes(ids)
    np.testing.assert_array_equal(back.scales, codes.scales)  # bit-exact scales
    np.testing.assert_array_equal(back.codes, codes.codes)
    assert back.n_samples >= codes.n_samples - tok48.config.hop
    out, out_sr = tok48.decode_audio(ids)
    assert out_sr == 48000 and out.shape[0] == 2
    np.testing.assert_array_equal(out, ref_wav[:, : out.shape[1]].numpy())
    exact, _ = tok48.decode_audio(codes)  # AudioCodes keep the sample count: trimmed exactly
    np.testing.assert_array_equal(exact, ref_wav[:, : x.shape[-1]].numpy())


def test_resample_and_downmix_rules(tok24, encodec_repository, excerpt, tmp_path):
    wav, sr = excerpt
    stereo44 = AF.resample(torch.from_numpy(wav), sr, 44100).numpy()
    stereo44 = np.stack([stereo44, 0.5 * stereo44[::-1].copy()], axis=1)  # two different channels
    path = tmp_path / "stereo44.wav"
    sf.write(path, stereo44, 44100, subtype="FLOAT")
    model = _oracle("encodec_24khz", encodec_repository, 1.5)
    x = AF.resample(torch.from_numpy(stereo44.T.mean(0)), 44100, 24000)  # mean of channels, resample
    with torch.no_grad():
        ref = model.encode(x[None, None])[0][0][0].numpy()
    codes = tok24.encode_audio(path, normalize=False)
    assert codes.n_samples == x.numel()
    np.testing.assert_array_equal(codes.codes, ref)


def test_windowed_resampling_equals_whole_file(excerpt):
    wav, sr = excerpt
    src = AudioSource(AF.resample(torch.from_numpy(wav), sr, 44100).numpy(), 44100)
    inp = CodecInput(src, 24000, 1)
    whole = AF.resample(torch.from_numpy(src._wav), 44100, 24000)
    assert whole.shape[1] == inp.n_samples
    a = 7 * inp.align * 100
    np.testing.assert_allclose(inp.read(a, a + 24000).numpy(), whole[:, a : a + 24000].numpy(), atol=1e-6)


def test_chunked_encoding_seams(fitted_codec_dir, encodec_repository, real_audio_files):
    """Seam rule: windows with context whose frames are dropped. Measured agreement with a
    whole-file encode (documented in docs/readme/tokenizer.md)."""
    wav = np.concatenate([sf.read(f, dtype="float32")[0] for f in real_audio_files[:3]])[: 24000 * 20]
    fitted = load_codec(str(fitted_codec_dir))
    whole = fitted.encode(wav, 24000, chunk_seconds=1000).codes
    chunked = fitted.encode(wav, 24000, chunk_seconds=4, context_seconds=1).codes
    assert chunked.shape == whole.shape
    assert (chunked == whole).mean() >= 0.99  # non-causal fitted codec: exact in practice
    c48 = load_codec("encodec_48khz", 3.0, encodec_repository)
    w48 = wav[: 24000 * 6]
    a, b = c48.encode(w48, 24000, batch_seconds=1000), c48.encode(w48, 24000, batch_seconds=2)
    np.testing.assert_array_equal(a.codes, b.codes)  # segments are independent: exact
    np.testing.assert_array_equal(a.scales, b.scales)


def test_pretrained_repository_from_env(encodec_repository, monkeypatch):
    assert pretrained_available("encodec_48khz", encodec_repository)
    monkeypatch.setenv("MMTOK_ENCODEC_DIR", str(encodec_repository))
    assert pretrained_available("encodec_24khz")
    codec = load_codec("encodec_24khz", 3.0)
    assert codec.n_codebooks == 4 and codec.frame_rate == 75 and codec.sample_rate == 24000


def test_encodec_file_names_in_a_directory_and_in_the_torch_hub_cache(encodec_repository, tmp_path, monkeypatch):
    """encodec names its checkpoints <name>-<sha256 prefix>.th. A file under the official name that
    is not the official file (a stand-in) is refused with both hashes named; the hub cache layout
    (TORCH_HOME/hub/checkpoints) is searched like a directory."""
    import shutil

    from mmtok.tokenizer.codec import CodecFileError, checkpoint_files

    monkeypatch.delenv("MMTOK_ENCODEC_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    stand_in = next(encodec_repository.glob("encodec_24khz-*.th"))
    official = tmp_path / "official"
    official.mkdir()
    shutil.copy(stand_in, official / "encodec_24khz-d7cc33bc.th")  # the official name, other bytes
    assert checkpoint_files("encodec_24khz", official)[0].name == "encodec_24khz-d7cc33bc.th"
    with pytest.raises(CodecFileError, match=r"encodec_24khz-d7cc33bc.th: its sha256 starts with \w+, its name says d7cc33bc"):
        load_codec("encodec_24khz", 1.5, repository=official)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(stand_in, hub / stand_in.name)
    assert pretrained_available("encodec_24khz")  # no repository: the hub cache
    from_hub = load_codec("encodec_24khz", 1.5)
    direct = load_codec("encodec_24khz", 1.5, repository=encodec_repository)
    for a, b in zip(from_hub.model.state_dict().values(), direct.model.state_dict().values()):
        assert torch.equal(a, b)
    (hub / stand_in.name).write_bytes(b"not a checkpoint")
    renamed = hub / f"encodec_24khz-{sha256_file(hub / stand_in.name)[:8]}.th"
    (hub / stand_in.name).rename(renamed)
    with pytest.raises(CodecFileError, match="not a encodec_24khz checkpoint"):
        load_codec("encodec_24khz", 1.5)


def test_missing_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MMTOK_ENCODEC_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # never download, even where a network exists
    assert not pretrained_available("encodec_24khz")
    with pytest.raises(FileNotFoundError, match="MMTOK_ENCODEC_DIR"):
        load_codec("encodec_24khz")
    with pytest.raises(FileNotFoundError, match="encodec_48khz-7e698e3e.th"):
        load_codec("encodec_48khz", repository=tmp_path)


def test_collapsed_codecs_are_refused(tmp_path, caption_file, fitted_codec_dir):
    from encodec import EncodecModel
    from safetensors.torch import load_file, save_file

    # encodec with pretrained=False: codebooks never initialised, every code 0
    repo = tmp_path / "untrained"
    repo.mkdir()
    torch.save(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), repo / "w.th")
    digest = hashlib.sha256((repo / "w.th").read_bytes()).hexdigest()[:8]
    os.replace(repo / "w.th", repo / f"encodec_24khz-{digest}.th")
    with pytest.raises(CodecCollapseError, match="never initialised"):
        MultimodalTokenizer.build([caption_file], codec="encodec_24khz", bandwidth=1.5,
                                  out=tmp_path / "tok", vocab_size=400, repository=repo)
    assert not (tmp_path / "tok").exists()

    # a fitted codec whose codebook 0 has one vector repeated: one code only
    bad = tmp_path / "collapsed"
    bad.mkdir()
    state = load_file(str(fitted_codec_dir / "model.safetensors"))
    key = "quantizer.vq.layers.0._codebook.embed"
    state[key] = state[key][:1].repeat(state[key].shape[0], 1)
    save_file(state, str(bad / "model.safetensors"))
    import json

    config = json.loads((fitted_codec_dir / "codec.json").read_text())
    config["sha256"] = hashlib.sha256((bad / "model.safetensors").read_bytes()).hexdigest()
    (bad / "codec.json").write_text(json.dumps(config))
    with pytest.raises(CodecCollapseError, match="codebook 0: 1 distinct"):
        load_fitted_codec(bad)
