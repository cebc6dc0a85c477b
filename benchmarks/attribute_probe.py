"""How much of each caption attribute the audio tokens carry: linear probes. Prints JSON.

    .venv/bin/python benchmarks/attribute_probe.py runs/demo             # a demo output directory
    .venv/bin/python benchmarks/attribute_probe.py runs/demo --decoded   # + what the decoded codes keep

The captioning goal (issue 6: family >= 80%, tempo class >= 70%, mode >= 70% on unseen pieces)
asks a language model to read these attributes out of codec tokens. Before blaming the model,
ask how much of each attribute a plain classifier can read out of the same inputs, trained on
the same train clips and scored on the same unseen test clips:

  codes          bag of codes: per-codebook code histograms (+ the rate at which codebook 0
                 changes), from the shards the model is trained on
  audio_timbre   log-mel mean and std over time (64 bands), from the corpus's audio files
  audio_rhythm   autocorrelation of the onset-strength envelope (lags 0-2.7 s)
  audio_key      max correlation of the chroma with the 12 rotations of the Krumhansl-Kessler
                 major and minor profiles (2 numbers: transposition-invariant by design)
  decoded_*      (--decoded) the three audio features of the codes the model sees, decoded back
                 to audio by the tokenizer's codec: what the codec keeps of each attribute, in a
                 form the hand-made features can read

Each probe is multinomial logistic regression (standardised features, AdamW, weight decay picked
on the valid split), so its score is a floor on what the features hold, not a ceiling. The
hand-made audio features carry domain knowledge the language model has to learn from data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ATTRIBUTES = ("family", "tempo_class", "mode", "meter", "key")  # key: the tonic, 12 classes (does pitch survive the codec?)
MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)  # Krumhansl-Kessler
MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def shard_codes(demo: Path, split: str) -> dict:
    """clip id -> its AudioCodes, read with the training stream's own decoder (no pickle)."""
    from mmtok.data.stream import decode_sample, iter_shard, resolve_shards

    out = {}
    for url in resolve_shards(f"{demo / 'shards' / 'shards.jsonl'}#{split}"):
        for raw in iter_shard(url, 0, print):
            s = decode_sample(raw)
            out[s.meta["id"]] = s.codes
    return out


def code_features(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    hist = [np.bincount(c, minlength=codebook_size)[:codebook_size] / len(c) for c in codes]
    change = np.mean(codes[0, 1:] != codes[0, :-1], keepdims=True)
    return np.concatenate([*hist, change]).astype(np.float32)


def audio_features(path: str) -> dict[str, np.ndarray]:
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return waveform_features(torch.from_numpy(x.mean(1)), sr)


def waveform_features(x: torch.Tensor, sr: int) -> dict[str, np.ndarray]:
    """Timbre, rhythm and key features of a mono waveform (n,)."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sr, n_fft=2048, hop_length=512, n_mels=64)(x)
    logmel = (mel + 1e-6).log()  # (64, frames)
    onset = (logmel[:, 1:] - logmel[:, :-1]).clamp(min=0).sum(0)
    onset = (onset - onset.mean()).numpy()
    lags = min(128, len(onset))  # 128 hops of 512 at 24 kHz ~ 2.7 s
    ac = np.correlate(onset, onset, "full")[len(onset) - 1 : len(onset) - 1 + lags]
    ac = np.pad(ac / (ac[0] + 1e-6), (0, 128 - lags))
    spec = torch.stft(x, 4096, 1024, window=torch.hann_window(4096), return_complex=True).abs().mean(1)
    freqs = torch.fft.rfftfreq(4096, 1 / sr)
    band = (freqs > 60) & (freqs < 2000)
    pitch_class = (torch.round(12 * torch.log2(freqs[band] / 440.0)) % 12).long()
    chroma = torch.zeros(12).index_add_(0, pitch_class, spec[band]).numpy()
    return {"audio_timbre": torch.cat([logmel.mean(1), logmel.std(1)]).numpy(), "audio_rhythm": ac.astype(np.float32),
            "audio_key": key_profile_features(chroma)}  # fmt: skip


def key_profile_features(chroma: np.ndarray) -> np.ndarray:
    """(2,): max correlation of a 12-bin chroma (C first) with the 12 rotations of the major and
    of the minor key profile: transposition-invariant, so a linear probe can read the mode."""
    key = [max(np.corrcoef(chroma, np.roll(profile, r))[0, 1] for r in range(12)) for profile in (MAJOR, MINOR)]
    return np.nan_to_num(np.asarray(key, np.float32))


def fit_probe(x: dict[str, np.ndarray], y: dict[str, np.ndarray], steps: int = 400):
    """Logistic regression on x["train"] -> y["train"], weight decay picked on valid.
    Returns (predict: features (N, D) -> class ids (N,), test accuracy)."""
    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-4
    xs = {k: torch.from_numpy((v - mu) / sd) for k, v in x.items()}
    ys = {k: torch.from_numpy(v) for k, v in y.items()}
    n_classes = int(max(v.max() for v in y.values())) + 1
    best = (-1.0, 0.0, None)
    for wd in (1e-3, 1e-2, 1e-1, 1.0):
        torch.manual_seed(0)
        lin = torch.nn.Linear(xs["train"].shape[1], n_classes)
        opt = torch.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=wd)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(lin(xs["train"]), ys["train"]).backward()
            opt.step()
        with torch.no_grad():
            acc = {k: float((lin(xs[k]).argmax(1) == ys[k]).float().mean()) for k in ("valid", "test")}
        if acc["valid"] > best[0]:
            best = (acc["valid"], acc["test"], lin)
    lin = best[2]

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return lin(torch.from_numpy((features - mu) / sd)).argmax(1).numpy()

    return predict, best[1]


def probe(x: dict[str, np.ndarray], y: dict[str, np.ndarray], steps: int = 400) -> float:
    """Test accuracy of logistic regression on x["train"] -> y["train"], weight decay picked on valid."""
    return fit_probe(x, y, steps)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a demo output directory (corpus/ and shards/ inside)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decoded", action="store_true",
                    help="also probe the audio features of the model's codes decoded by the tokenizer's codec")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    splits = ("train", "valid", "test")
    rows = {s: [json.loads(line) for line in (args.demo / "corpus" / f"{s}.jsonl").read_text().splitlines()]
            for s in splits}  # fmt: skip
    codes = {s: shard_codes(args.demo, s) for s in splits}
    rows = {s: [r for r in rows[s] if r["id"] in codes[s]] for s in splits}  # clips that made it into shards
    codebook_size = 1 + max(int(c.codes.max()) for s in splits for c in codes[s].values())
    feats = {s: [{"codes": code_features(codes[s][r["id"]].codes, codebook_size), **audio_features(r["audio"])}
                 for r in rows[s]] for s in splits}  # fmt: skip
    names = ["codes", "audio_timbre", "audio_rhythm", "audio_key"]
    if args.decoded:
        from mmtok.tokenizer.multimodal import MultimodalTokenizer

        tok = MultimodalTokenizer.from_pretrained(args.demo / "tokenizer")
        for s in splits:
            for r, f in zip(rows[s], feats[s]):
                wav, sr = tok.decode_audio(codes[s][r["id"]])  # (C, n)
                f.update({k.replace("audio_", "decoded_"): v
                          for k, v in waveform_features(torch.from_numpy(wav).mean(0), sr).items()})
        names += ["decoded_timbre", "decoded_rhythm", "decoded_key"]
    result = {"demo": str(args.demo), "clips": {s: len(rows[s]) for s in splits}, "attributes": {}}
    for attr in ATTRIBUTES:
        classes = sorted({r[attr] for s in splits for r in rows[s]})
        y = {s: np.array([classes.index(r[attr]) for r in rows[s]]) for s in splits}
        counts = np.bincount(y["train"], minlength=len(classes))
        majority = float(np.mean(y["test"] == counts.argmax()))  # train's majority class, scored on test
        scores = {"majority_baseline": round(majority, 3)}
        for name in names:
            x = {s: np.stack([f[name] for f in feats[s]]) for s in splits}
            scores[name] = round(probe(x, y), 3)
        result["attributes"][attr] = scores
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
