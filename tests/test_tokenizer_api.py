"""MultimodalTokenizer end to end on the fitted tiny codec: text vs sentencepiece, audio codes vs
encodec's EncodecModel on the same weights, ids round trips, interleaving, save/load."""

import subprocess
import sys

import numpy as np
import sentencepiece as spm
import torch

from mmtok.tokenizer.layout import Modality


def test_text_matches_sentencepiece(tokenizer, tokenizer_dir):
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "spm.model"))
    for s in ["A calm slow chorale played on piano in C major.", "Une mélodie naïve ♪ 音楽 🎵", "x  y\tz"]:
        ids = tokenizer.encode_text(s)
        assert ids == sp.encode(s)
        assert tokenizer.decode_text(ids) == sp.decode(ids) == s
    assert max(tokenizer.encode_text("🎵 unseen emoji")) < tokenizer.layout.text_size


def test_special_strings_are_plain_text_unless_allowed(tokenizer):
    layout = tokenizer.layout
    text = "before <soa> middle <eoa> after"
    plain = tokenizer.encode_text(text)
    assert all(tokenizer.modality_of(plain) == Modality.TEXT)
    assert tokenizer.decode_text(plain) == text
    allowed = tokenizer.encode_text(text, allow_special=True)
    assert allowed.count(layout.soa_id) == 1 and allowed.count(layout.eoa_id) == 1
    assert tokenizer.decode_text(allowed, keep_special=True) == text


def test_codes_equal_encodec_encode(tokenizer, real_audio_files, tmp_path):
    """Up to chunk_seconds (8 s) the encode is one window: exactly encodec's."""
    import soundfile as sf
    import torchaudio.functional as AF

    wav, sr = sf.read(real_audio_files[1], dtype="float32")
    wav = wav[: int(7.5 * sr)]
    sf.write(tmp_path / "clip.wav", wav, sr, subtype="FLOAT")
    codes = tokenizer.encode_audio(tmp_path / "clip.wav", normalize=False)  # the codec's own codes
    model = tokenizer.codec.model
    x = AF.resample(torch.from_numpy(wav)[None], sr, model.sample_rate)  # (1, n)
    with torch.no_grad():
        ref = model.encode(x[None])[0][0][0].numpy()  # (K, T) encodec's own encode
    assert codes.n_samples == x.shape[-1] and codes.sample_rate == model.sample_rate
    np.testing.assert_array_equal(codes.codes, ref[: tokenizer.config.n_codebooks])
    assert all(len(np.unique(row)) > 10 for row in codes.codes)  # non-degenerate
    # With the loudness rule: encodec's codes of the input scaled by the rule's gain.
    ruled = tokenizer.encode_audio(tmp_path / "clip.wav")
    assert ruled.gain_db != 0.0
    with torch.no_grad():
        ref = model.encode(x[None] * 10 ** (ruled.gain_db / 20))[0][0][0].numpy()
    assert (ruled.codes == ref[: tokenizer.config.n_codebooks]).mean() >= 0.999  # float rounding of the gain


def test_ids_roundtrip_and_decode_equals_encodec(tokenizer, real_audio_files):
    codes = tokenizer.encode_audio(real_audio_files[2])
    ids = tokenizer.codes_to_ids(codes)
    layout = tokenizer.layout
    assert ids[0] == layout.soa_id and ids[-1] == layout.eoa_id
    assert len(ids) == 2 + codes.codes.size
    back = tokenizer.ids_to_codes(ids)
    np.testing.assert_array_equal(back.codes, codes.codes)
    wav, sr = tokenizer.decode_audio(ids)
    with torch.no_grad():
        ref = tokenizer.codec.model.decode([(torch.from_numpy(codes.codes)[None], None)])[0]
    np.testing.assert_array_equal(wav, ref[:, : wav.shape[1]].numpy())
    wav_exact, _ = tokenizer.decode_audio(codes)  # codes keep the original length
    assert wav_exact.shape[1] == codes.n_samples and sr == tokenizer.sample_rate


def test_interleaved_roundtrip(tokenizer, real_audio_files):
    a = tokenizer.encode_audio(real_audio_files[3])
    out = tokenizer.encode_interleaved(["Describe this:", a, "A nylon guitar chorale."], bos=True, eos=True)
    layout = tokenizer.layout
    assert out.ids[0] == layout.bos_id and out.ids[-1] == layout.eos_id
    assert out.modality.shape == out.ids.shape
    np.testing.assert_array_equal(out.modality, tokenizer.modality_of(out.ids))
    audio_span = out.spans[1]
    assert out.ids[audio_span.start] == layout.soa_id and out.ids[audio_span.stop - 1] == layout.eoa_id
    assert (out.modality[audio_span.start + 1 : audio_span.stop - 1] == Modality.AUDIO).all()
    segs = tokenizer.decode_interleaved(out.ids)
    assert [s.modality for s in segs] == [Modality.TEXT, Modality.AUDIO, Modality.TEXT]
    assert segs[0].text == "Describe this:" and segs[2].text == "A nylon guitar chorale."
    np.testing.assert_array_equal(segs[1].codes.codes, a.codes)


def test_len_and_layout(tokenizer):
    layout = tokenizer.layout
    assert len(tokenizer) == layout.vocab_size and len(tokenizer) % 64 == 0
    assert layout.audio_end <= len(tokenizer)
    assert layout.n_codebooks == tokenizer.config.n_codebooks
    assert layout.codebook_size == tokenizer.codec.codebook_size


def test_save_load_in_fresh_process(tokenizer, tmp_path, real_audio_files):
    tokenizer.save_pretrained(tmp_path / "copy")
    text = "A stately fast chorale on trumpet."
    code = (
        "import sys, json, numpy as np\n"
        "from mmtok import MultimodalTokenizer\n"
        f"tok = MultimodalTokenizer.from_pretrained({str(tmp_path / 'copy')!r})\n"
        f"c = tok.encode_audio({str(real_audio_files[0])!r})\n"
        f"print(json.dumps({{'len': len(tok), 'hash': tok.layout.hash, 'text': tok.encode_text({text!r}),"
        " 'audio': tok.codes_to_ids(c)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["len"] == len(tokenizer) and got["hash"] == tokenizer.layout.hash
    assert got["text"] == tokenizer.encode_text(text)
    assert got["audio"] == tokenizer.codes_to_ids(tokenizer.encode_audio(real_audio_files[0]))
