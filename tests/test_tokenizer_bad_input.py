"""Bad input gets a clear error naming the file and the problem; nothing half-written loads."""

import numpy as np
import pytest
import soundfile as sf

from mmtok import MultimodalTokenizer
from mmtok.tokenizer.audio_io import AudioInputError, AudioSource, CodecInput
from mmtok.tokenizer.layout import LayoutMismatchError


def test_unreadable_truncated_and_empty_files(tokenizer, real_audio_files, tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    with pytest.raises(AudioInputError, match="garbage.wav: unreadable audio file"):
        tokenizer.encode_audio(garbage)

    raw = real_audio_files[0].read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioInputError, match="cut.wav: truncated WAV"):
        tokenizer.encode_audio(cut)

    wav, sr = sf.read(real_audio_files[0], dtype="float32")
    flac = tmp_path / "full.flac"
    sf.write(flac, wav, sr)
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(AudioInputError, match=r"cut.flac: (truncated|cannot decode)"):
        tokenizer.encode_audio(cut_flac)

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), sr)
    with pytest.raises(AudioInputError, match="empty.wav: zero-length audio"):
        tokenizer.encode_audio(empty)
    with pytest.raises(AudioInputError, match="zero-length"):
        tokenizer.encode_audio(np.zeros(0, np.float32), sr)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        tokenizer.encode_audio(tmp_path / "nope.wav")


def test_nan_inf_samples(tokenizer, real_clip, tmp_path):
    wav, sr = real_clip
    bad = wav.copy()
    bad[sr * 2] = np.nan
    with pytest.raises(AudioInputError, match=r"NaN or inf sample at 2\.000 s"):
        tokenizer.encode_audio(bad, sr)
    path = tmp_path / "inf.wav"
    bad[sr * 2] = np.inf
    sf.write(path, bad, sr, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="inf.wav: NaN or inf"):
        tokenizer.encode_audio(path)


def test_channel_rules(real_clip, tmp_path):
    wav, sr = real_clip
    three = np.stack([wav, 0.5 * wav, -wav], axis=1)  # (n, 3)
    path = tmp_path / "surround.wav"
    sf.write(path, three, sr, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="surround.wav: 3 channels not supported by a 2-channel codec"):
        CodecInput(AudioSource(path), 48000, 2)
    with AudioSource(path) as src:  # mono codec: mean of all channels
        mono = CodecInput(src, sr, 1).read(0, sr)
    np.testing.assert_allclose(mono[0].numpy(), three[:sr].mean(axis=1), atol=1e-6)
    with AudioSource(wav, sr) as src:  # stereo codec: mono duplicated
        st = CodecInput(src, sr, 2).read(0, 100).numpy()
    np.testing.assert_array_equal(st[0], st[1])


def test_ids_out_of_range_or_foreign(tokenizer):
    layout = tokenizer.layout
    with pytest.raises(LayoutMismatchError, match="outside"):
        tokenizer.decode_text([5, layout.audio_end + 3])
    with pytest.raises(LayoutMismatchError, match="outside"):
        tokenizer.ids_to_codes([layout.soa_id, -1, layout.eoa_id])
    with pytest.raises(ValueError, match="non-audio id"):
        tokenizer.ids_to_codes([layout.soa_id, 5, layout.eoa_id])
    with pytest.raises(ValueError, match="audio ids"):
        tokenizer.decode_text([5, layout.audio_base])
    with pytest.raises(LayoutMismatchError, match="ids.npy was made with vocabulary layout 0123456789abcdef"):
        layout.require("0123456789abcdef", "ids.npy")


def test_interrupted_build_leaves_nothing_that_loads(tokenizer_dir, fitted_codec_dir, caption_file, tmp_path, monkeypatch):
    import mmtok.tokenizer.multimodal as mm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while SentencePiece trains

    monkeypatch.setattr(mm, "train_sentencepiece", interrupted)
    out = tmp_path / "tok"
    with pytest.raises(KeyboardInterrupt):
        MultimodalTokenizer.build([caption_file], codec=str(fitted_codec_dir), out=out, vocab_size=400)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # replacing an existing tokenizer: the old one stays intact when the rebuild fails
    import shutil

    shutil.copytree(tokenizer_dir, out)
    with pytest.raises(KeyboardInterrupt):
        MultimodalTokenizer.build([caption_file], codec=str(fitted_codec_dir), out=out, vocab_size=400, overwrite=True)
    assert len(MultimodalTokenizer.from_pretrained(out)) == len(MultimodalTokenizer.from_pretrained(tokenizer_dir))
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="already exists"):
        MultimodalTokenizer.build([caption_file], codec=str(fitted_codec_dir), out=out, vocab_size=400)
    with pytest.raises(FileNotFoundError, match="not a tokenizer directory"):
        MultimodalTokenizer.from_pretrained(tmp_path)


def test_corrupt_fitted_codec_weights(tokenizer_dir, tmp_path):
    import shutil

    copy = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, copy)
    weights = copy / "codec" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        MultimodalTokenizer.from_pretrained(copy)


def test_waveform_layouts_are_told_apart_by_one_rule(tokenizer, real_clip, encodec_repository, tmp_path):
    """soundfile.read gives (frames, channels), torch and encodec (channels, frames): the same
    15 s of stereo audio in either layout gives the same codes; a shape the rule cannot decide is
    refused, and channels_first= decides it."""
    from mmtok.tokenizer.audio_io import channels_first_view
    from mmtok.tokenizer.codec import load_codec

    wav, sr = real_clip
    reps = int(np.ceil(15 * sr / len(wav)))
    left = np.tile(wav, reps)[: 15 * sr]
    stereo = np.stack([left, 0.5 * left[::-1]])  # (2, n): two different channels
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo.T, sr, subtype="FLOAT")
    as_read, _ = sf.read(path, dtype="float32")  # (n, 2), soundfile's layout
    assert as_read.shape == (15 * sr, 2)
    first = tokenizer.encode_audio(stereo, sr)
    for codes in (tokenizer.encode_audio(as_read, sr), tokenizer.encode_audio(path)):
        assert codes.n_samples == first.n_samples and codes.n_frames == first.n_frames > 100
        np.testing.assert_array_equal(codes.codes, first.codes)
    # A stereo codec keeps the channels apart: the layouts must still agree (2 s of 48 kHz).
    codec = load_codec("encodec_48khz", 3.0, encodec_repository)
    short = stereo[:, : 2 * sr]
    np.testing.assert_array_equal(codec.encode(AudioSource(short.T, sr)).codes, codec.encode(AudioSource(short, sr)).codes)
    with pytest.raises(AudioInputError, match=r"shape \(4, 6\): cannot tell the channel axis"):
        tokenizer.encode_audio(np.zeros((4, 6), np.float32), sr)
    with pytest.raises(AudioInputError, match="cannot tell"):
        AudioSource(np.zeros((1000, 2000), np.float32), sr)
    assert channels_first_view(np.zeros((4, 6)), channels_first=False).shape == (6, 4)
    assert AudioSource(np.zeros((1000, 2000), np.float32), sr, channels_first=True).channels == 1000
    with pytest.raises(AudioInputError, match=r"\(n,\), \(channels, n\) or \(n, channels\)"):
        AudioSource(np.zeros((2, 3, 4), np.float32), sr)
