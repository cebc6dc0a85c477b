"""How the loudness rules compare on real rendered music: what each leaves of the input's level.

    python benchmarks/loudness.py MANIFEST.jsonl [--sample-rate 16000] [--limit 300]

For every clip of the manifest at three input gains (x0.1, x1, x3 of the file, the loudest
peak-limited to 0.99 as a file would be), each rule's gain is applied and the result measured
with BS.1770 (pyloudnorm). Prints JSON per rule: the spread of the normalised loudness over
clips and gains (what the model would still see of level), how often the peak guard cut the
gain, and the time per clip.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyloudnorm

from mmtok.data.manifest import read_manifest
from mmtok.tokenizer.audio_io import AudioSource, CodecInput
from mmtok.tokenizer.loudness import LoudnessRule, apply_gain

RULES = {"none": LoudnessRule("none"), "rms:-23": LoudnessRule("rms", -23.0), "lufs:-23": LoudnessRule("lufs", -23.0)}
GAINS = (0.1, 1.0, 3.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--sample-rate", type=int, default=16000, help="the codec's rate (the demo's: 16 kHz)")
    ap.add_argument("--limit", type=int, default=300)
    args = ap.parse_args()
    items = read_manifest(args.manifest)[: args.limit]
    clips = []
    for item in items:
        with AudioSource(item["audio"]) as src:
            inp = CodecInput(src, args.sample_rate, 1)
            clips.append(inp.read(0, inp.n_samples).numpy().astype(np.float64))  # (1, n)
    meter = pyloudnorm.Meter(args.sample_rate)
    out = {"clips": len(clips), "gains": GAINS, "sample_rate": args.sample_rate}
    for name, rule in RULES.items():
        measured, guarded, seconds = [], 0, 0.0
        for wav in clips:
            for g in GAINS:
                x = wav * g
                x = x * min(1.0, 0.99 / np.abs(x).max())  # a file cannot hold more
                t0 = time.perf_counter()
                gain = rule.gain_db(x, args.sample_rate)
                seconds += time.perf_counter() - t0
                y = apply_gain(x, gain)
                guarded += rule.mode != "none" and np.abs(y).max() >= 10 ** (rule.peak_db / 20) - 1e-6
                measured.append(meter.integrated_loudness(y[0]))
        m = np.array(measured)
        per_clip = m.reshape(len(clips), len(GAINS))
        out[name] = {
            "lufs_p5_p50_p95": [round(float(v), 2) for v in np.percentile(m, [5, 50, 95])],
            "lufs_std_over_clips_and_gains": round(float(m.std()), 2),
            "max_spread_within_a_clip_db": round(float((per_clip.max(1) - per_clip.min(1)).max()), 3),
            "peak_guarded_share": round(guarded / m.size, 3),
            "ms_per_clip": round(1000 * seconds / m.size, 2),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
