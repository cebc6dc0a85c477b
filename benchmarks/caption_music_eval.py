"""End-to-end captioning, text->music and caption-metric cost. Prints JSON.

    .venv/bin/python benchmarks/caption_music_eval.py [--threads 2] [--preset demo] [--device cpu]

Set-up (not timed): three real chorale excerpts rendered by fluidsynth, a tiny codec fitted on
them with `fit_codec(minutes=0)` (k-means codebooks only: 16 kHz, 25 Hz, 4 x 256 codes), a
tokenizer, and a model of the preset's shape with random weights (speed does not depend on
training; caption lengths do, so every caption is forced to `--caption-tokens` tokens by
`TextConstraint(min_tokens=...)`).
Timed, best of `--repeats`:
  caption: files -> codes -> prompt -> text-only generation -> str, batch 1 and batch B;
  music:   text -> `seconds` of audio tokens (whole frames) -> codec decode, as a realtime factor;
  metrics: pycocoevalcap on N caption pairs, with and without METEOR (one JVM start each).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build_assets(tmp: Path):
    import soundfile as sf
    from music21 import corpus

    from mmtok.codec.fit import fit_codec
    from mmtok.demo.render import available_soundfonts, render_score
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    font = next(iter(available_soundfonts().values()))
    (tmp / "audio").mkdir()
    files = []
    for i, (piece, program) in enumerate([("bach/bwv66.6", 0), ("bach/bwv1.6", 40), ("bach/bwv10.7", 19)]):
        wav = render_score(corpus.parse(piece).measures(1, 8), program, font, 24000)
        sf.write(tmp / "audio" / f"c{i}.wav", wav, 24000)
        files.append(tmp / "audio" / f"c{i}.wav")
    codec = fit_codec(tmp / "audio", tmp / "codec", minutes=0, preset="tiny", progress=False)
    (tmp / "text.txt").write_text("\n".join(f"A slow {w} chorale in D minor, {60 + i} BPM, 4/4 time."
                                            for i, w in enumerate(["piano", "violin", "organ"] * 30)))
    tok = MultimodalTokenizer.build([tmp / "text.txt"], str(codec), tmp / "tok", vocab_size=1000)
    return files, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="demo", help="configs/<preset>.yaml model shape")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--caption-seconds", type=float, default=5.0)
    ap.add_argument("--caption-tokens", type=int, default=32)
    ap.add_argument("--music-seconds", type=float, default=4.0)
    ap.add_argument("--metric-pairs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmtok.config import load_config
    from mmtok.eval.caption_metrics import caption_metrics
    from mmtok.generate.captioner import CaptionConfig, Captioner
    from mmtok.generate.constraints import TextConstraint
    from mmtok.generate.music import generate_music
    from mmtok.generate.sampling import GenerationConfig

    with tempfile.TemporaryDirectory() as tmp:
        files, tok = build_assets(Path(tmp))
        cfg = load_config(Path(__file__).parents[1] / "configs" / f"{args.preset}.yaml").model
        torch.manual_seed(0)
        model = cfg.for_vocab(len(tok)).build().to(args.device).eval()

        n = args.caption_tokens
        gen = GenerationConfig(max_new_tokens=n, greedy=True)
        cap = Captioner(model, tok, CaptionConfig(seconds=args.caption_seconds, batch_size=args.batch, generation=gen))
        cap.constraint = TextConstraint(tok.layout, min_tokens=n)  # every caption exactly n tokens
        batch = (files * args.batch)[: args.batch]
        cap(files[0])  # warm-up (codec load)
        t1 = best_of(args.repeats, lambda: cap(files[0]))
        tb = best_of(args.repeats, lambda: cap.caption_batch(batch))
        t_encode = best_of(args.repeats, lambda: cap.encode(files[0]))
        prompt_tokens = len(cap.prompt_ids(cap.encode(files[0])))

        sampling = GenerationConfig(top_k=250, seed=0)
        t_music = best_of(args.repeats, lambda: generate_music(model, tok, "a slow piano chorale", args.music_seconds,
                                                                sampling))
        music_tokens = round(args.music_seconds * tok.frame_rate) * tok.config.n_codebooks + 1

        preds = [f"a {w} chorale in d minor" for w in ("slow piano", "fast violin", "organ")] * args.metric_pairs
        refs = [f"A slow {w} chorale in D minor, 4/4 time." for w in ("piano", "violin", "organ")] * args.metric_pairs
        preds, refs = preds[: args.metric_pairs], refs[: args.metric_pairs]
        t_no_meteor = best_of(1, lambda: caption_metrics(preds, refs, meteor=False))
        t_meteor = best_of(1, lambda: caption_metrics(preds, refs, meteor=True))

    print(json.dumps({
        "machine": {"device": args.device, "threads": args.threads, "torch": torch.__version__},
        "model": {"preset": args.preset, "params": sum(p.numel() for p in model.parameters()),
                  "dim": cfg.dim, "n_layers": cfg.n_layers, "vocab": len(tok)},
        "codec": {"id": tok.config.codec, "frame_rate": tok.frame_rate, "n_codebooks": tok.config.n_codebooks},
        "caption": {
            "audio_seconds": args.caption_seconds, "prompt_tokens": prompt_tokens,
            "caption_tokens": n, "encode_s": round(t_encode, 4),
            "batch1_s_per_clip": round(t1, 4), "batch1_tokens_per_s": round(n / t1, 1),
            f"batch{args.batch}_s_per_clip": round(tb / args.batch, 4),
            f"batch{args.batch}_tokens_per_s": round(n * args.batch / tb, 1),
        },
        "music": {"seconds": args.music_seconds, "tokens": music_tokens, "wall_s": round(t_music, 3),
                  "realtime_factor": round(args.music_seconds / t_music, 3),
                  "tokens_per_s": round(music_tokens / t_music, 1)},
        "metrics": {"pairs": len(preds), "bleu_rouge_cider_s": round(t_no_meteor, 2),
                    "with_meteor_s": round(t_meteor, 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
