"""`mmtok caption` / `mmtok generate` end to end on a tiny trained checkpoint, and their bad inputs."""

import json
import shutil

import soundfile as sf

from mmtok.cli import main
from mmtok.generate.captioner import CaptionConfig, Captioner
from mmtok.generate.sampling import GenerationConfig
from mmtok.tokenizer.layout import Modality


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_caption_cli_prints_one_caption_per_file(trained_run, real_audio_files, capsys):
    files = real_audio_files[:3]
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", trained_run, *files, "--json", "--seconds", "1.2",
                           "--max-new-tokens", "24")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["audio"] for r in rows] == [str(f) for f in files]
    # The Python API on the same checkpoint gives the same captions (greedy is deterministic).
    cap = Captioner.from_checkpoint(trained_run, CaptionConfig(seconds=1.2, generation=GenerationConfig(
        max_new_tokens=24, greedy=True)))
    assert [r["caption"] for r in rows] == cap.caption_batch(files)
    wav, sr = sf.read(files[0], dtype="float32")
    assert cap(wav, sr) == rows[0]["caption"]
    # No audio (or other non-text) token in the trained model's captions, only a closing <eos>.
    layout = cap.tokenizer.layout
    for ids in cap.generate_ids([cap.encode(f) for f in files]):
        body = ids[:-1] if ids[-1] == layout.eos_id else ids
        assert (layout.modality_of(body) == Modality.TEXT).all()

    rc, out, _ = run_cli(capsys, "caption", "--checkpoint", next((trained_run / "checkpoints").glob("step_*")),
                         files[0], "--windows", "2", "--max-new-tokens", "8")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == -(-int(sf.info(files[0]).duration * 25) // 50)
    assert all(line.split("\t")[0] == str(files[0]) for line in lines)
    assert lines[0].split("\t")[1] == "0.00-2.00"


def test_generate_cli_writes_the_requested_length(trained_run, tmp_path, capsys):
    from mmtok.checkpoint import load_for_inference

    out = tmp_path / "x.wav"
    rc, stdout, err = run_cli(capsys, "generate", "--checkpoint", trained_run, "a slow piano piece in D minor",
                              "--seconds", "1.5", "--out", out, "--seed", "0")
    assert rc == 0, err
    _, _, tok = load_for_inference(trained_run)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (tok.sample_rate, 1, round(1.5 * tok.sample_rate))
    assert str(out) in stdout


def _one_line_error(rc, out, err, *fragments):
    assert rc != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for f in fragments:
        assert f in err, err


def test_bad_inputs_give_one_clear_line(trained_run, real_audio_files, tmp_path, capsys):
    clip = real_audio_files[0]
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", tmp_path / "nope", clip), "does not exist")

    empty = tmp_path / "empty_run"
    empty.mkdir()
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", empty, clip), "holds no checkpoint")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained_run, corrupt)
    weights = next((corrupt / "checkpoints").glob("step_*")) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", corrupt, clip), "model.safetensors")

    other = tmp_path / "other_layout"
    shutil.copytree(trained_run, other)
    state = next((other / "checkpoints").glob("step_*")) / "train_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "layout_hash": "0123456789abcdef"}))
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", other, clip), "layout", "0123456789abcdef")
    _one_line_error(*run_cli(capsys, "generate", "--checkpoint", other, "piano", "--out", tmp_path / "o.wav"),
                    "layout")

    text = tmp_path / "readme.wav"
    text.write_text("this is not audio")
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", trained_run, clip, text), "readme.wav")
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", trained_run, tmp_path / "gone.flac"), "gone.flac")
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", trained_run, clip, "--seconds", "60"),
                    "prompt too long for the context")
    _one_line_error(*run_cli(capsys, "generate", "--checkpoint", trained_run, "piano", "--seconds", "60",
                             "--out", tmp_path / "long.wav"), "prompt too long for the context")
    assert not (tmp_path / "long.wav").exists() and not (tmp_path / "o.wav").exists()


def test_a_file_that_fails_mid_batch_loses_no_other_caption(trained_run, real_audio_files, tmp_path, capsys):
    """Unreadable headers stop the batch before any work, naming every bad file; a file whose
    header reads but whose samples do not (here: NaN samples) is reported after the others'
    captions are printed."""
    import numpy as np

    good = real_audio_files[:2]
    nan = tmp_path / "nan.wav"
    wav, sr = sf.read(good[0], dtype="float32")
    wav[100] = np.nan
    sf.write(nan, wav, sr, subtype="FLOAT")
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", trained_run, good[0], nan, good[1], "--json",
                           "--seconds", "1.2", "--max-new-tokens", "8")
    assert rc != 0 and "Traceback" not in err
    assert [json.loads(line)["audio"] for line in out.splitlines()] == [str(good[0]), str(good[1])]
    assert "1 of 3 audio files failed" in err and "nan.wav" in err and "NaN" in err
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", trained_run, nan, good[0], "--windows", "2",
                           "--max-new-tokens", "8")
    assert rc != 0 and out and all(line.startswith(f"{good[0]}\t") for line in out.splitlines())
    assert "1 of 2 audio files failed" in err and "nan.wav" in err

    bad = [tmp_path / "a.wav", tmp_path / "b.flac"]
    bad[0].write_text("not audio")
    _one_line_error(*run_cli(capsys, "caption", "--checkpoint", trained_run, good[0], *bad),
                    "2 of 3 audio files cannot be read, nothing was captioned", "a.wav", "b.flac")
