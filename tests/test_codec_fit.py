"""`fit_codec`: an EnCodec-architecture codec from the package's modules, non-degenerate at any
budget, loadable by path, with the adversarial option, manifests and resumable checkpoints."""

import json

import numpy as np
import pytest
import torch

from mmtok.codec.fit import fit_codec
from mmtok.codec.losses import MelLoss
from mmtok.tokenizer.codec import load_codec


def test_zero_minutes_is_usable(real_audio_files, tmp_path):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(f), "text": "x"}) + "\n" for f in real_audio_files[:4]))
    out = fit_codec(manifest, tmp_path / "c0", minutes=0, preset="tiny", progress=False)
    config = json.loads((out / "codec.json").read_text())
    assert config["training"]["steps"] == 0
    assert min(config["training"]["distinct_codes_per_codebook"]) > 50
    codec = load_codec(str(out))  # collapse guard passes
    from encodec import EncodecModel

    assert isinstance(codec.model, EncodecModel) and codec.frame_rate == 25 and codec.n_codebooks == 4
    codes = codec.encode(real_audio_files[5]).codes  # held-out clip
    assert all(len(np.unique(r)) > 20 for r in codes)


def test_adversarial_option_trains(real_audio_dir, tmp_path):
    out = fit_codec(real_audio_dir, tmp_path / "adv", minutes=0.03, preset="tiny", adversarial=True, progress=False)
    config = json.loads((out / "codec.json").read_text())
    assert config["training"]["adversarial"] and config["training"]["steps"] > 0
    load_codec(str(out))
    with pytest.raises(ValueError, match="another preset/options"):
        fit_codec(real_audio_dir, out, minutes=0, preset="tiny", adversarial=False, progress=False)


def test_training_improves_reconstruction(real_audio_files, tmp_path):
    """150 steps (~12 s) of training lower the multi-scale mel error on a held-out clip
    (measured 6.6 -> 3.2)."""
    import soundfile as sf
    import torchaudio.functional as AF

    train = tmp_path / "train.txt"
    train.write_text("\n".join(str(f) for f in real_audio_files[:5]))
    wav, sr = sf.read(real_audio_files[5], dtype="float32")
    x = AF.resample(torch.from_numpy(wav), sr, 16000)[None, None]
    mel = MelLoss(16000)

    def error(out):
        codec = load_codec(str(out))
        with torch.no_grad():
            y = codec.decode(codec.encode(x[0, 0].numpy(), 16000))[None]
            return float(mel(y, x))

    before = error(fit_codec(train, tmp_path / "c0", minutes=0, preset="tiny", progress=False))
    after = error(fit_codec(train, tmp_path / "c1", minutes=5, max_steps=150, preset="tiny", progress=False))
    assert after < 0.7 * before


def test_collapsed_fit_stops_and_keeps_its_checkpoint(real_audio_dir, tmp_path):
    """A fit whose encoder stops depending on its input (the failure seen on the `small`
    preset: the ELU before the last conv saturated) raises at the next liveness check instead of
    overwriting fit_state.pt, and writes no codec."""
    out = fit_codec(real_audio_dir, tmp_path / "c", minutes=5, max_steps=5, preset="tiny", progress=False)
    state_path = out / "fit_state.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["step"] == 5 and state["initial_variation"] > 0
    # Saturate the ELU before the encoder's last conv: every pre-activation ~ -1000.
    bias = [k for k in state["model"] if k.startswith("encoder.model.12.") and k.endswith("bias")]
    assert bias, "tiny encoder layout changed: layer 12 is the conv before the final ELU"
    state["model"][bias[0]].fill_(-1000.0)
    torch.save(state, state_path)
    (out / "codec.json").unlink()
    saved = state_path.read_bytes()
    with pytest.raises(RuntimeError, match=r"collapsed at step \d+: the encoder output no longer varies"):
        fit_codec(real_audio_dir, out, minutes=5, max_steps=8, preset="tiny", progress=False)
    assert state_path.read_bytes() == saved
    assert not (out / "codec.json").exists()


def test_capped_audio_spreads_over_the_listing(real_audio_files):
    """Under the audio cap, a seed draws files from the whole listing (reproducibly); no seed
    keeps the listing's head."""
    from mmtok.codec.audio import load_training_audio

    one = [load_training_audio([f], 16000, 1e9)[0] for f in real_audio_files]
    cap = sum(w.numel() for w in one[:3]) / 16000  # room for 3 files (the last one may be cut)

    def picked(seed):
        return [next(i for i, w in enumerate(one) if torch.equal(w[: got.numel()], got))
                for got in load_training_audio(real_audio_files, 16000, cap, seed=seed)]

    assert picked(None) == [0, 1, 2]
    assert picked(0) == picked(0)
    assert any(max(picked(s)) > 2 for s in range(3))


def test_budget_counts_over_resumed_runs(real_audio_dir, tmp_path):
    """`minutes` is the fit's total: a rerun of a finished fit changes nothing (not even the final
    k-means pass), a larger budget trains only the difference, a smaller one warns and keeps it."""
    out = fit_codec(real_audio_dir, tmp_path / "c", minutes=0.05, preset="tiny", progress=False)
    first = json.loads((out / "codec.json").read_text())["training"]
    assert first["steps"] > 0 and 0.05 <= first["fit_minutes"] < 0.1
    weights = (out / "model.safetensors").read_bytes()

    fit_codec(real_audio_dir, out, minutes=0.05, preset="tiny", progress=False)
    again = json.loads((out / "codec.json").read_text())["training"]
    assert again["steps"] == first["steps"] and (out / "model.safetensors").read_bytes() == weights

    fit_codec(real_audio_dir, out, minutes=0.1, preset="tiny", progress=False)
    longer = json.loads((out / "codec.json").read_text())["training"]
    assert longer["steps"] > first["steps"] and 0.1 <= longer["fit_minutes"] < 0.15

    with pytest.warns(UserWarning, match=r"more than the 0\.0 asked; keeping it"):
        fit_codec(real_audio_dir, out, minutes=0.0, preset="tiny", progress=False, checkpoint_seconds=1.0)
    assert json.loads((out / "codec.json").read_text())["training"]["steps"] == longer["steps"]


def test_unreadable_files_are_skipped_and_recorded(real_audio_files, tmp_path):
    """One bad file in a corpus does not stop a fit: it is left out with a warning and listed in
    codec.json; a listing with no readable file at all is an error naming the problem."""
    import shutil

    audio = tmp_path / "audio"
    audio.mkdir()
    for f in real_audio_files[:3]:
        shutil.copy(f, audio)
    (audio / "broken.wav").write_text("not audio")
    with pytest.warns(UserWarning, match="broken.wav: unreadable audio file"):
        out = fit_codec(audio, tmp_path / "c", minutes=0, preset="tiny", progress=False)
    training = json.loads((out / "codec.json").read_text())["training"]
    assert training["train_files"] == 3 and training["available_files"] == 4
    assert [s["audio"] for s in training["skipped_files"]] == [str(audio / "broken.wav")]
    load_codec(str(out))

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.flac").write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the 1 audio files could be read"):
        fit_codec(only_bad, tmp_path / "c2", minutes=0, preset="tiny", progress=False)
