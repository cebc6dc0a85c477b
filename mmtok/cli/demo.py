"""`mmtok demo`: the whole pipeline on the embedded default corpus (or any stage of it)."""

from __future__ import annotations

import argparse

from mmtok.demo.pipeline import STAGES, DemoConfig
from mmtok.tokenizer.patterns import SEMANTIC_PLACEMENTS


def register(sub) -> None:
    d = DemoConfig()
    p = sub.add_parser("demo", help="corpus -> codec -> tokenizer -> shards -> train -> captions + report")
    p.add_argument("--out", default=d.out, help=f"output directory (default {d.out})")
    p.add_argument("--size", default=d.size, choices=["smoke", "default", "large"], help="demo corpus size")
    p.add_argument("--pieces", type=int, default=d.pieces, help="custom corpus size: number of pieces")
    p.add_argument("--clips-per-piece", type=int, default=d.clips_per_piece,
                   help="custom corpus size: clips rendered per piece (8 at --size default)")
    p.add_argument("--ood-pieces", type=int, default=d.ood_pieces,
                   help="custom corpus size: held-out pieces for the out-of-distribution test (60 at --size default)")
    p.add_argument("--captions-per-clip", type=int, default=d.captions_per_clip,
                   help=f"wordings of each clip's caption (default {d.captions_per_clip}); training draws one each time")
    p.add_argument("--stage", action="append", choices=STAGES, help="run only this stage (repeatable)")
    p.add_argument("--force", action="store_true", help="re-run stages even when complete")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--codec", default=d.codec, help="auto | fit | encodec_24khz | encodec_48khz | PATH")
    p.add_argument("--codec-minutes", type=float, default=d.codec_minutes,
                   help="codec fit budget in minutes, in total (more than a finished fit had resumes it)")
    p.add_argument("--codec-preset", default=d.codec_preset)
    p.add_argument("--bandwidth", type=float, default=d.bandwidth, help="codec bandwidth in kbps")
    p.add_argument("--n-codebooks", type=int, default=d.n_codebooks, help="codebooks per frame the model sees")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="SentencePiece vocabulary size")
    p.add_argument("--loudness", default=d.loudness,
                   help=f"the tokenizer's loudness rule: lufs[:TARGET], rms[:TARGET] or none (default {d.loudness})")
    p.add_argument("--config", default=d.config, help=f"training preset name or YAML path (default {d.config})")
    p.add_argument("--train-minutes", type=float, default=d.train_minutes,
                   help=f"wall-clock cap on training (default {d.train_minutes:g}); it checkpoints and stops there")
    p.add_argument("--train-steps", type=int, default=d.train_steps,
                   help="length of the LR schedule (default: the config's train.max_steps, 2550 for demo_small)")
    p.add_argument("--steps-per-minute", type=float, default=d.steps_per_minute,
                   help="or size the schedule to the cap: train steps = train minutes x this rate")
    p.add_argument("--tasks", action=argparse.BooleanOptionalAction, default=d.tasks,
                   help="also build, train and report question answering, time-stamped and playlist captions "
                        "(default: on; --no-tasks: captions and text -> music only)")
    p.add_argument("--semantic", action=argparse.BooleanOptionalAction, default=d.semantic,
                   help="add the semantic stream (k-means ids of chroma + onset features with the codes, "
                        "fitted on the train audio; default: off)")
    p.add_argument("--semantic-clusters", type=int, default=d.semantic_clusters,
                   help=f"the semantic stream's k-means size (default {d.semantic_clusters})")
    p.add_argument("--semantic-placement", default=d.semantic_placement, choices=SEMANTIC_PLACEMENTS,
                   help=f"the semantic ids before the codes (prefix) or beside each frame's (frame); "
                        f"default {d.semantic_placement}")
    p.add_argument("--prompt", default=d.generate_prompt, help="text prompt for the generated audio sample")
    p.add_argument("overrides", nargs="*", help="dotted training overrides, e.g. model.n_layers=4")
    p.set_defaults(func=run)


def demo_config(args) -> DemoConfig:
    return DemoConfig(
        out=args.out, size=args.size, pieces=args.pieces, clips_per_piece=args.clips_per_piece,
        ood_pieces=args.ood_pieces,
        captions_per_clip=args.captions_per_clip, seed=args.seed,
        codec=args.codec, codec_preset=args.codec_preset,
        codec_minutes=args.codec_minutes, bandwidth=args.bandwidth, n_codebooks=args.n_codebooks,
        vocab_size=args.vocab_size, loudness=args.loudness, config=args.config, train_minutes=args.train_minutes,
        train_steps=args.train_steps, steps_per_minute=args.steps_per_minute, tasks=args.tasks,
        semantic=args.semantic, semantic_clusters=args.semantic_clusters,
        semantic_placement=args.semantic_placement, overrides=list(args.overrides),
        generate_prompt=args.prompt,
    )


def run(args) -> int:
    from mmtok.demo.pipeline import DemoPipeline

    DemoPipeline(demo_config(args)).run(stages=args.stage or STAGES, force=args.force)
    return 0
