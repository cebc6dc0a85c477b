"""`mmtok tokenizer build/encode/decode/inspect` and `mmtok codec fit`, end to end."""

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from mmtok.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_build_inspect_encode_decode(fitted_codec_dir, caption_file, real_audio_files, tmp_path, capsys):
    tok = tmp_path / "tok"
    rc, out, _ = run(capsys, "tokenizer", "build", "--text", str(caption_file), "--codec", str(fitted_codec_dir),
                     "--bandwidth", "0.8", "--vocab-size", "400", "--out", str(tok))
    assert rc == 0 and json.loads(out)["n_codebooks"] == 4
    # inspect in a fresh process through the installed entry point
    proc = subprocess.run([sys.executable, "-m", "mmtok", "tokenizer", "inspect", str(tok)],
                          capture_output=True, text=True, check=True)
    info = json.loads(proc.stdout)
    assert info["vocab_size"] % 64 == 0 and info["audio_tokens_per_second"] == 100
    assert info["ranges"]["audio"][1] - info["ranges"]["audio"][0] == 4 * 256

    ids_path = tmp_path / "ids" / "a.npy"
    rc, out, _ = run(capsys, "tokenizer", "encode", "--tokenizer", str(tok), "--audio", str(real_audio_files[1]),
                     "--out", str(ids_path))
    assert rc == 0 and ids_path.is_file() and ids_path.with_suffix(".json").is_file()
    wav_path = tmp_path / "a.wav"
    rc, out, _ = run(capsys, "tokenizer", "decode", "--tokenizer", str(tok), str(ids_path), "--out", str(wav_path))
    assert rc == 0
    orig = sf.info(real_audio_files[1])
    dec, sr = sf.read(wav_path)
    assert sr == 16000 and len(dec) == int(np.ceil(orig.frames * 16000 / orig.samplerate))  # exact length
    assert np.isfinite(dec).all() and np.abs(dec).max() > 0

    text_ids = tmp_path / "t.npy"
    text = "A gentle fast chorale <eos> on flute."
    assert run(capsys, "tokenizer", "encode", "--tokenizer", str(tok), "--text", text, "--out", str(text_ids))[0] == 0
    assert run(capsys, "tokenizer", "decode", "--tokenizer", str(tok), str(text_ids), "--out", str(tmp_path / "t.txt"))[0] == 0
    assert (tmp_path / "t.txt").read_text() == text
    assert np.load(text_ids).max() < info["ranges"]["text"][1]  # "<eos>" stayed plain text


def test_decode_with_another_layout_fails(tokenizer_dir, fitted_codec_dir, caption_file, tmp_path, capsys):
    ids_path = tmp_path / "t.npy"
    assert run(capsys, "tokenizer", "encode", "--tokenizer", str(tokenizer_dir), "--text", "hello", "--out", str(ids_path))[0] == 0
    other = tmp_path / "other"
    assert run(capsys, "tokenizer", "build", "--text", str(caption_file), "--codec", str(fitted_codec_dir),
               "--vocab-size", "350", "--n-codebooks", "2", "--out", str(other))[0] == 0
    rc, _, err = run(capsys, "tokenizer", "decode", "--tokenizer", str(other), str(ids_path), "--out", str(tmp_path / "x.txt"))
    assert rc == 2 and "t.npy was made with vocabulary layout" in err
    assert not (tmp_path / "x.txt").exists()
    ids_path.with_suffix(".json").unlink()
    rc, _, err = run(capsys, "tokenizer", "decode", "--tokenizer", str(tokenizer_dir), str(ids_path), "--out", str(tmp_path / "x.txt"))
    assert rc == 2 and "missing sidecar" in err
    rc, _, err = run(capsys, "tokenizer", "build", "--text", str(caption_file), "--codec", str(fitted_codec_dir),
                     "--out", str(other))
    assert rc == 2 and "already exists" in err


def test_codec_fit_cli_and_resume(real_audio_dir, tmp_path, capsys):
    out = tmp_path / "codec"
    rc, stdout, _ = run(capsys, "codec", "fit", "--audio", str(real_audio_dir), "--out", str(out),
                        "--preset", "tiny", "--minutes", "0.02", "--no-progress")
    first = json.loads(stdout)
    assert rc == 0 and first["steps"] > 0 and (out / "fit_state.pt").is_file()
    rc, stdout, _ = run(capsys, "codec", "fit", "--audio", str(real_audio_dir), "--out", str(out),
                        "--preset", "tiny", "--minutes", "0.04", "--no-progress")  # the total: 0.02 more
    second = json.loads(stdout)
    assert rc == 0 and second["steps"] > first["steps"]  # resumed, not restarted
    assert second["sha256"] != first["sha256"]
    rc, _, err = run(capsys, "codec", "fit", "--audio", str(tmp_path / "nothing"), "--out", str(tmp_path / "c2"),
                     "--preset", "tiny", "--minutes", "0")
    assert rc == 2 and "nothing" in err
