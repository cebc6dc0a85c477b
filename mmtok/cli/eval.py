"""`mmtok eval`: caption metrics, per-modality perplexity and attribute accuracy of a checkpoint."""

from __future__ import annotations

from mmtok.cli.generate import add_caption_flags, add_checkpoint_flags, caption_config, user_errors


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="score a checkpoint's captions (BLEU, METEOR, ROUGE-L, CIDEr) and perplexity",
        description="Caption every item of a manifest, score the captions against its `text` with "
                    "pycocoevalcap, optionally measure per-modality perplexity on held-out shards and "
                    "attribute accuracy (demo corpus); write <out>/eval.json and <out>/eval.md.")
    add_checkpoint_flags(p)
    p.add_argument("--manifest", required=True, help="JSONL manifest with `audio` and `text` (e.g. test.jsonl)")
    p.add_argument("--shards", default=None, metavar="DIR_OR_PATTERN",
                   help="held-out shards for perplexity: directory, brace pattern or shards.jsonl#split")
    p.add_argument("--attributes", action="store_true",
                   help="also score instrument, tempo class, key/mode and meter named in the captions "
                        "(demo-corpus manifests) against the majority-class baseline")
    p.add_argument("--out", default=None, help="report directory (default: RUN/eval/step_N)")
    p.add_argument("--limit", type=int, default=None, help="first N manifest items only")
    p.add_argument("--ppl-rows", type=int, default=400,
                   help="held-out rows (data.seq_len tokens each) for perplexity (default 400)")
    p.add_argument("--no-meteor", dest="meteor", action="store_false",
                   help="skip METEOR (saves a Java VM start, ~6 s)")
    add_caption_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mmtok.cli import CLIError
    from mmtok.demo.attributes import DEMO_GRAMMAR
    from mmtok.eval.evaluate import default_out_dir, evaluate
    from mmtok.eval.report import write_report
    from mmtok.generate.captioner import Captioner

    if args.limit is not None and args.limit <= 0:
        raise CLIError(f"--limit must be positive, got {args.limit}")
    with user_errors():
        captioner = Captioner.from_checkpoint(args.checkpoint, caption_config(args), device=args.device)
        report = evaluate(captioner, args.manifest, shards=args.shards, run_config=captioner.run_config,
                          attributes=DEMO_GRAMMAR if args.attributes else None, limit=args.limit, meteor=args.meteor,
                          ppl_rows=args.ppl_rows, device=args.device)
    json_path, md_path = write_report(args.out or default_out_dir(captioner.source), report)
    for name, value in report["caption_metrics"].items():
        print(f"{name}\t{value:.4f}")
    for name, p in report.get("perplexity", {}).items():
        ppl = p["perplexity"]
        print(f"perplexity_{name}\t{'-' if ppl is None else f'{ppl:.3f}'}")
    print(f"wrote {json_path} and {md_path}")
    return 0
