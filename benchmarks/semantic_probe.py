"""Do semantic tokens carry what the codec codes do not? Linear probes on codes, ids and both. Prints JSON.

    .venv/bin/python benchmarks/semantic_probe.py runs/demo/corpus --codec runs/demo/codec
    .venv/bin/python benchmarks/semantic_probe.py CORPUS --codec CODEC --parts chroma chroma+flux \
        --clusters 256 1024 --cache /tmp/semprobe/cache

The step-1 measurement of "a semantic stream beside the EnCodec codes": for each attribute
(mode, tonic, tempo class, instrument family) a linear probe (attribute_probe.py's: logistic
regression, weight decay picked on valid, scored on test) reads out

  codes           today's codec codes as attribute_probe.py reads them: per-codebook code
                  histograms + the change rate of codebook 0
  codes+rhythm    the same + `id_rhythm_features` of codebook 0 (the time-aware readout the
                  semantic ids get, so the comparison is fair)
  sem             the semantic ids of one feature choice and cluster count: id histogram +
                  `id_rhythm_features` (autocorrelation of id changes and id recurrence over
                  lags of 40-200 BPM)
  sem-rhythm      `id_rhythm_features` of the ids alone (64 numbers at 25 Hz)
  sem-key         the ids read as pitch: each id's centre as a 12-bin chroma, averaged over the
                  clip, key-found (attribute_probe's 2 Krumhansl-profile correlations). Mode is
                  relative to the tonic, so no linear map of absolute-pitch counts reads it; this
                  is the transposition-invariant readout, as `codes decoded_key` is for the codes
  codes decoded_* (--decoded) attribute_probe's key-finding / rhythm features of the codes
                  decoded back to audio by the codec
  both            codes+rhythm and sem side by side
  frames          (diagnostic) mean and std over time of the standardised features before
                  k-means: what the features hold before they are quantised to ids

Codec codes are made as the demo's tokenizer makes them (the loudness rule, default lufs:-23,
then the fitted codec at `--bandwidth`). The semantic tokenizer (mmtok.tokenizer.semantic) is
fitted on the train split's frames only; the probes train on train, pick weight decay on valid
and report test. Manifests: CORPUS/{train,valid,test}.jsonl; a corpus still being rendered has
none yet, so its finished clips' facts (CORPUS/audio/*.json beside their FLAC) are read instead.
Features and codes of each clip are cached under --cache (keyed by clip id and codec checksum).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from attribute_probe import code_features, key_profile_features, probe, waveform_features

from mmtok.tokenizer.codec import load_fitted_codec
from mmtok.tokenizer.codes import AudioCodes
from mmtok.tokenizer.loudness import LoudnessRule
from mmtok.tokenizer.semantic import (
    SPECTRAL_PARTS,
    SemanticTokenizer,
    SpectralFeatures,
    id_histogram,
    id_rhythm_features,
)

SPLITS = ("train", "valid", "test")
ATTRIBUTES = ("mode", "key", "tempo_class", "family")
READS = {"sem-key": ("mode", "key"), "decoded_key": ("mode", "key"),  # single-purpose readouts: probed on
         "sem-rhythm": ("tempo_class",), "decoded_rhythm": ("tempo_class",)}  # their attributes only


def corpus_rows(corpus: Path) -> dict[str, list[dict]]:
    """The train/valid/test rows of a demo corpus: its manifests, or (still rendering) its facts files."""
    if all((corpus / f"{s}.jsonl").is_file() for s in SPLITS):
        return {s: [json.loads(line) for line in (corpus / f"{s}.jsonl").read_text().splitlines() if line.strip()]
                for s in SPLITS}  # fmt: skip
    rows = {s: [] for s in SPLITS}
    for facts in sorted((corpus / "audio").glob("*.json")):
        r = json.loads(facts.read_text())
        audio = facts.with_suffix(".flac")
        if r.get("split") in rows and audio.is_file():
            rows[r["split"]].append({**r, "audio": str(audio)})
    return rows


def cached(path: Path, rows: list[dict], make):
    """{clip id: array} for every row, from an .npz cache; the clips it lacks are made by
    `make(row)` and the cache is rewritten (a corpus that grew since the cache was written)."""
    out = {}
    if path.is_file():
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
    missing = [r for r in rows if r["id"] not in out]
    if missing:
        out.update({r["id"]: make(r) for r in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
    return out


def centre_chroma(tok: SemanticTokenizer, parts: tuple[str, ...]) -> np.ndarray | None:
    """(k, 12) pitch-class profile of each cluster centre, from its chroma part (or its folded
    log-frequency part), in the features' own units; None without either part."""
    raw = (tok.centres / tok.scale + tok.mean).numpy()
    offsets = np.cumsum([0, *tok.features.groups])
    span = {p: slice(offsets[i], offsets[i + 1]) for i, p in enumerate(parts)}
    if "chroma" in span:
        return np.clip(raw[:, span["chroma"]], 0, None)
    if "logfreq" in span:
        bands = np.exp(raw[:, span["logfreq"]])  # per-frame-mean-removed log magnitudes -> relative magnitudes
        return np.stack([bands[:, i::12].sum(1) for i in range(12)], 1)
    return None


def decoded_features(codec, c: np.ndarray) -> dict[str, np.ndarray]:
    """attribute_probe's key-finding and rhythm features of one clip's codes decoded to audio."""
    ac = AudioCodes(codes=c, n_samples=c.shape[1] * codec.hop, sample_rate=codec.sample_rate, codec=codec.id)
    f = waveform_features(codec.decode(ac).mean(0), codec.sample_rate)
    return {"decoded_key": f["audio_key"], "decoded_rhythm": f["audio_rhythm"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="a demo corpus directory (manifests, or audio/*.json facts)")
    ap.add_argument("--codec", type=Path, required=True, help="a `mmtok codec fit` directory")
    ap.add_argument("--bandwidth", type=float, default=0.5, help="codec kbps (0.5 = the demo's 2 codebooks)")
    ap.add_argument("--loudness", default="lufs:-23", help="the tokenizer's loudness rule")
    ap.add_argument("--parts", nargs="+", default=["chroma", "chroma+flux", "logfreq+mfcc+flux"],
                    help="feature choices, each a '+'-joined subset of " + ", ".join(SPECTRAL_PARTS))
    ap.add_argument("--clusters", nargs="+", type=int, default=[256, 1024])
    ap.add_argument("--max-frames", type=int, default=50_000, help="train frames the k-means sees")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips per split (development)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/semantic_probe_cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decoded", action="store_true",
                    help="also read the codes decoded back to audio with attribute_probe's key-finding and rhythm features")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = {s: r[: args.limit] for s, r in corpus_rows(args.corpus).items()}

    codec = load_fitted_codec(args.codec, args.bandwidth)
    rule = LoudnessRule.parse(args.loudness)
    codec_key = f"{codec.id.replace('@', '_')}_{args.bandwidth}_{args.loudness.replace(':', '')}"
    full = SpectralFeatures(SPECTRAL_PARTS, frame_rate=codec.frame_rate)  # every part once; choices slice it
    offsets = np.cumsum([0, *full.groups])
    columns = {p: np.arange(offsets[i], offsets[i + 1]) for i, p in enumerate(SPECTRAL_PARTS)}
    timing = {}
    t = time.perf_counter()
    codes = {s: cached(args.cache / codec_key / f"{s}.npz", rows[s],
                       lambda r: codec.encode(r["audio"], loudness=rule).codes) for s in SPLITS}
    timing["codec_codes"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    frames = {s: cached(args.cache / f"spectral_{codec.frame_rate:g}hz" / f"{s}.npz", rows[s],
                        lambda r: SemanticTokenizer(full).frames(r["audio"]).numpy()) for s in SPLITS}
    timing["spectral_frames"] = round(time.perf_counter() - t, 1)
    rows = {s: [r for r in rows[s] if r["id"] in codes[s] and r["id"] in frames[s]] for s in SPLITS}
    for s in SPLITS:
        n_codes = {codes[s][r["id"]].shape[1] for r in rows[s]}
        n_frames = {frames[s][r["id"]].shape[0] for r in rows[s]}
        assert n_codes == n_frames, f"{s}: codec frames {n_codes} != semantic frames {n_frames}"

    codebook_size = codec.codebook_size
    base = {s: [code_features(codes[s][r["id"]], codebook_size) for r in rows[s]] for s in SPLITS}
    rhythm = {s: [id_rhythm_features(codes[s][r["id"]][0], codec.frame_rate) for r in rows[s]] for s in SPLITS}
    feature_sets = {"codes": {s: np.stack(base[s]) for s in SPLITS},
                    "codes+rhythm": {s: np.hstack([np.stack(base[s]), np.stack(rhythm[s])]) for s in SPLITS}}
    if args.decoded:  # the codes decoded back to audio, read by attribute_probe's key-finding and rhythm features
        t = time.perf_counter()
        memo = {}  # one decode per clip for both readouts

        def decoded(s, r, name):
            if (s, r["id"]) not in memo:
                memo[s, r["id"]] = decoded_features(codec, codes[s][r["id"]])
            return memo[s, r["id"]][name]

        for name in ("decoded_key", "decoded_rhythm"):
            dec = {s: cached(args.cache / codec_key / f"{s}_{name}.npz", rows[s], lambda r, s=s, n=name: decoded(s, r, n))
                   for s in SPLITS}  # fmt: skip
            feature_sets[f"codes {name}"] = {s: np.stack([dec[s][r["id"]] for r in rows[s]]) for s in SPLITS}
        timing["decoded"] = round(time.perf_counter() - t, 1)
    tokenizers = {}
    for choice in args.parts:
        parts = tuple(choice.split("+"))
        cols = np.concatenate([columns[p] for p in parts])
        sliced = {s: [torch.from_numpy(frames[s][r["id"]][:, cols]) for r in rows[s]] for s in SPLITS}
        feats = SpectralFeatures(parts, frame_rate=codec.frame_rate)
        tok = None
        for k in args.clusters:
            t = time.perf_counter()
            tok = SemanticTokenizer(feats, n_clusters=k, max_frames=args.max_frames).fit_frames(sliced["train"])
            fit_seconds = time.perf_counter() - t
            ids = {s: [tok.ids_of_frames(f).numpy() for f in sliced[s]] for s in SPLITS}
            hist = {s: np.stack([id_histogram(i, k) for i in ids[s]]) for s in SPLITS}
            rhy = {s: np.stack([id_rhythm_features(i, codec.frame_rate) for i in ids[s]]) for s in SPLITS}
            sem = {s: np.hstack([hist[s], rhy[s]]) for s in SPLITS}
            feature_sets[f"sem {choice} k={k}"] = sem
            feature_sets[f"sem-rhythm {choice} k={k}"] = rhy
            pitch = centre_chroma(tok, parts)
            if pitch is not None:  # the ids' centres as chroma, weighted by the id histogram, key-found
                feature_sets[f"sem-key {choice} k={k}"] = {s: np.stack([key_profile_features(h @ pitch) for h in hist[s]])
                                                           for s in SPLITS}  # fmt: skip
            feature_sets[f"both {choice} k={k}"] = {s: np.hstack([feature_sets["codes+rhythm"][s], sem[s]])
                                                    for s in SPLITS}  # fmt: skip
            tokenizers[f"{choice} k={k}"] = {**tok.fit_info, "fit_seconds": round(fit_seconds, 1)}
        feature_sets[f"frames {choice}"] = {  # before quantisation (uses the last fit's standardisation)
            s: np.stack([torch.cat([(n := tok._normalise(f)).mean(0), n.std(0)]).numpy() for f in sliced[s]])
            for s in SPLITS}  # fmt: skip

    result = {"corpus": str(args.corpus), "codec": codec.id, "bandwidth": args.bandwidth,
              "frame_rate": codec.frame_rate, "clips": {s: len(rows[s]) for s in SPLITS},
              "tokenizers": tokenizers, "attributes": {}}  # fmt: skip
    for attr in ATTRIBUTES:
        classes = sorted({r[attr] for s in SPLITS for r in rows[s]})
        y = {s: np.array([classes.index(r[attr]) for r in rows[s]]) for s in SPLITS}
        majority = float(np.mean(y["test"] == np.bincount(y["train"], minlength=len(classes)).argmax()))
        scores = {"majority_baseline": round(majority, 3)}
        for name, x in feature_sets.items():
            if attr in READS.get(name.split(" ")[-1] if name.startswith("codes ") else name.split(" ")[0], ATTRIBUTES):
                scores[name] = round(probe(x, y), 3)
        result["attributes"][attr] = scores
        print(json.dumps({attr: scores}), flush=True)
    timing["total"] = round(time.perf_counter() - t0, 1)
    result["seconds"] = timing
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
