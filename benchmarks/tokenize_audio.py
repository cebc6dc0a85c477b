"""Audio tokenization throughput and memory: mmtok vs a plain per-file encodec loop. Prints JSON.

    .venv/bin/python benchmarks/tokenize_audio.py [--codec encodec_24khz] [--encodec-dir DIR]
        [--clips 8] [--threads 2] [--long-minutes 1 10]

Audio: real music rendered with fluidsynth from music21 (Bach chorales, several GM instruments),
~15 s clips; the long files (1 and 10 minutes by default) are the clips concatenated.
Throughput: audio seconds encoded per wall second over the same files in the same process,
mmtok (`MultimodalTokenizer.encode_audio(path)`: windowed reading/resampling, inference_mode)
against the loop encodec's README shows (soundfile read, `encodec.utils.convert_audio`,
`model.encode` under no_grad), the two alternating file by file so machine load hits both alike.
Memory: peak RSS of a fresh process encoding one long file (and the increase over the same
process after loading the model), for mmtok and the plain loop.
Weights: pretrained encodec when available (hub cache, --encodec-dir or $MMTOK_ENCODEC_DIR),
else a local stand-in with the same architecture (random encoder, k-means codebooks): speed and
memory do not depend on the weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

CHORALES = ["bach/bwv66.6", "bach/bwv1.6", "bach/bwv10.7", "bach/bwv101.7", "bach/bwv102.7", "bach/bwv103.6"]
PROGRAMS = [0, 40, 19, 24, 56, 73, 42, 68]  # piano, violin, organ, guitar, trumpet, flute, cello, oboe


def render_clips(out: Path, n: int, sample_rate: int = 44100) -> list[Path]:
    """n real music clips (first 8 measures of chorales, GM instruments), 44.1 kHz mono."""
    from music21 import corpus

    from mmtok.demo.render import available_soundfonts, render_score

    fonts = list(available_soundfonts().values())
    paths = []
    for i in range(n):
        path = out / f"clip{i}.wav"
        if not path.exists():
            score = corpus.parse(CHORALES[i % len(CHORALES)]).measures(1, 8)
            wav = render_score(score, PROGRAMS[i % len(PROGRAMS)], fonts[i % len(fonts)], sample_rate)
            sf.write(path, wav, sample_rate)
        paths.append(path)
    return paths


def long_file(out: Path, clips: list[Path], minutes: float) -> Path:
    path = out / f"long_{minutes:g}min.wav"
    if not path.exists():
        wav = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
        sr = sf.info(clips[0]).samplerate
        n = int(minutes * 60 * sr)
        sf.write(path, np.resize(wav, n), sr)  # tiles the clips
    return path


def resolve_weights(codec: str, bandwidth: float, repository, clips, workdir: Path):
    from mmtok.codec.kmeans import kmeans_encodec_repository
    from mmtok.tokenizer.codec import pretrained_available

    if pretrained_available(codec, repository):
        return repository, "pretrained"
    repo = workdir / "encodec_repo"
    if not any(repo.glob(f"{codec}-*.th")):
        kbps_per_codebook = {"encodec_24khz": 0.75, "encodec_48khz": 1.5}[codec]
        n_q = int(round(bandwidth / kbps_per_codebook))  # only the codebooks this bandwidth uses
        kmeans_encodec_repository(repo, clips, n_q=n_q, seconds=30, names=(codec,))
    return str(repo), "random encoder + k-means codebooks (architecture-exact stand-in)"


def plain_encode(model, path):
    """The per-file loop from encodec's README."""
    import torch
    from encodec.utils import convert_audio

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    wav = convert_audio(torch.from_numpy(wav.T), sr, model.sample_rate, model.channels)
    with torch.no_grad():
        return model.encode(wav[None])


def throughput(args, repo, clips) -> dict:
    import torch

    from mmtok.tokenizer.codec import load_codec

    codec = load_codec(args.codec, args.bandwidth, repo)
    model = load_codec(args.codec, args.bandwidth, repo).model  # a separate copy for the plain loop
    seconds = sum(sf.info(p).duration for p in clips)
    codec.encode(clips[0])  # warm-up (first-call allocations, oneDNN kernel selection) for both
    plain_encode(model, clips[0])
    t_mmtok = t_plain = 0.0
    for p in clips:  # alternate, so background load hits both alike
        t = time.perf_counter()
        codec.encode(p)
        t_mmtok += time.perf_counter() - t
        t = time.perf_counter()
        plain_encode(model, p)
        t_plain += time.perf_counter() - t
    return {"audio_seconds": round(seconds, 1), "files": len(clips),
            "mmtok_audio_s_per_s": round(seconds / t_mmtok, 2), "plain_encodec_audio_s_per_s": round(seconds / t_plain, 2),
            "ratio": round(t_plain / t_mmtok, 3), "torch_threads": torch.get_num_threads()}


def peak_memory(args, repo, path: Path, mode: str) -> dict:
    """Run one encode in a fresh process; report its peak RSS (VmHWM: per process image, unlike
    ru_maxrss which Linux carries over from the forking parent) and the rise over the RSS after
    the model is loaded."""
    code = f"""
import json, time, torch, sys
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024  # MiB

sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
torch.set_num_threads({args.threads})
from tokenize_audio import plain_encode
from mmtok.tokenizer.codec import load_codec
codec = load_codec({args.codec!r}, {args.bandwidth!r}, {repo!r})
base = status("VmRSS:")
t = time.perf_counter()
codec.encode({str(path)!r}) if {mode!r} == "mmtok" else plain_encode(codec.model, {str(path)!r})
wall = time.perf_counter() - t
peak = status("VmHWM:")
print(json.dumps({{"peak_rss_mb": peak, "rise_over_loaded_model_mb": peak - base, "seconds": round(wall, 1)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="encodec_24khz")
    ap.add_argument("--bandwidth", type=float, default=6.0)
    ap.add_argument("--encodec-dir", default=os.environ.get("MMTOK_ENCODEC_DIR"))
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long-minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--plain-long", action="store_true", help="also measure the plain loop on the long files (GBs)")
    ap.add_argument("--workdir", default=None, help="keep rendered audio / weights here between runs")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        clips = render_clips(work, args.clips)
        repo, weights = resolve_weights(args.codec, args.bandwidth, args.encodec_dir, clips, work)
        result = {"benchmark": "tokenize_audio", "codec": args.codec, "bandwidth_kbps": args.bandwidth,
                  "weights": weights, "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                  "input": "44.1 kHz mono WAV (resampled to the codec rate by both paths)"}
        result["throughput"] = throughput(args, repo, clips)
        memory = {}
        for minutes in args.long_minutes:
            path = long_file(work, clips, minutes)
            memory[f"{minutes:g}min"] = {"mmtok": peak_memory(args, repo, path, "mmtok")}
            if args.plain_long or minutes <= 1:
                memory[f"{minutes:g}min"]["plain_encodec"] = peak_memory(args, repo, path, "plain")
        result["memory"] = memory
        keys = [f"{m:g}min" for m in args.long_minutes]
        if len(keys) >= 2 and all("peak_rss_mb" in memory[k]["mmtok"] for k in keys):
            a, b = memory[keys[0]]["mmtok"], memory[keys[-1]]["mmtok"]
            result["mmtok_peak_ratio_long_vs_short"] = round(b["peak_rss_mb"] / a["peak_rss_mb"], 3)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
