"""`mmtok ask` (questions about a clip), `mmtok retrieve` (clips <-> captions by likelihood) and
`mmtok eval-tasks` (every task's evaluation in one report)."""

from __future__ import annotations

import json

from mmtok.cli.generate import add_caption_flags, add_checkpoint_flags, caption_config, check_audio_files, user_errors


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="answer questions about an audio clip",
                              description="Answer each question about the clip (one call, batched).")
    add_checkpoint_flags(p)
    p.add_argument("audio", help="the audio file the questions are about")
    p.add_argument("questions", nargs="+", help='questions, e.g. "What instrument is playing?"')
    p.add_argument("--json", action="store_true", help="print one JSON object per question")
    add_caption_flags(p)
    p.set_defaults(func=run_ask, max_new_tokens=48)

    p = subparsers.add_parser("retrieve", help="rank clips for captions and captions for clips by likelihood",
                              description="Score every (clip, caption) pair by log p(caption | clip) minus the "
                                          "caption's prior; with a manifest as --captions also R@1/5/10, mAP@10 "
                                          "and median rank beside the random baseline.")
    add_checkpoint_flags(p)
    p.add_argument("--captions", required=True,
                   help="a JSONL manifest (each item's text; ground truth from its audio) or a text file, one "
                        "caption per line")
    p.add_argument("--audio", nargs="+", default=None, metavar="DIR_OR_LIST",
                   help="the clips: files, a directory of audio files, or a text file listing paths "
                        "(default with a manifest: its clips)")
    p.add_argument("--direction", choices=("text2audio", "audio2text", "both"), default="both")
    p.add_argument("--top-k", type=int, default=10, help="candidates listed per query (default 10)")
    p.add_argument("--score", choices=("pmi", "none"), default="pmi",
                   help="pmi: log p(caption | clip) - log p(caption) (default); none: log p(caption | clip)")
    p.add_argument("--seconds", type=float, default=None, help="seconds of each clip (default: what fits)")
    p.add_argument("--batch-size", type=int, default=64, help="captions scored per forward (default 64)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--out", default=None, help="also write the report (JSON) here")
    p.set_defaults(func=run_retrieve)

    p = subparsers.add_parser("eval-tasks", help="evaluate QA, time-stamped captions, playlists, retrieval, music",
                              description="Each part runs for the manifest given; one report, tasks.json + "
                                          "tasks.md. --attributes uses the demo grammars.")
    add_checkpoint_flags(p)
    p.add_argument("--qa", default=None, help="manifest of qa items")
    p.add_argument("--segments", default=None, help="manifest of segments items")
    p.add_argument("--playlist", default=None, help="manifest of playlist items")
    p.add_argument("--retrieval", default=None, help="caption manifest for retrieval (each item's text)")
    p.add_argument("--music", default=None, help="caption manifest: generate music from its captions, caption it back")
    p.add_argument("--music-seconds", type=float, default=2.0, help="seconds of music per prompt (default 2)")
    p.add_argument("--attributes", action="store_true", help="score answers and captions with the demo grammars")
    p.add_argument("--limit", type=int, default=None, help="first N items of each manifest (retrieval: first N clips)")
    p.add_argument("--music-limit", type=int, default=16, help="captions of --music generated from (default 16)")
    p.add_argument("--no-meteor", dest="meteor", action="store_false", help="skip METEOR")
    p.add_argument("--out", required=True, help="report directory")
    add_caption_flags(p)
    p.set_defaults(func=run_eval_tasks)


def run_ask(args) -> int:
    from mmtok.generate.asker import Asker

    check_audio_files([args.audio])
    with user_errors():
        asker = Asker.from_checkpoint(args.checkpoint, caption_config(args), device=args.device)
        answers = asker(args.audio, args.questions)
    for q, a in zip(args.questions, answers):
        print(json.dumps({"audio": args.audio, "question": q, "answer": a}, ensure_ascii=False) if args.json
              else f"{q}\t{a}", flush=True)
    return 0


def _clips(paths) -> list[str]:
    from pathlib import Path

    from mmtok.cli import CLIError

    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(str(f) for f in path.iterdir() if f.suffix.lower() in
                          (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif"))
        elif path.suffix.lower() in (".txt", ".lst", ".list"):
            out += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            out.append(str(path))
    if not out:
        raise CLIError(f"no audio found in {', '.join(map(str, paths))}")
    return out


def run_retrieve(args) -> int:
    from mmtok.eval.retrieval import evaluate_retrieval, read_retrieval_set
    from mmtok.generate.captioner import CaptionConfig, Captioner
    from mmtok.generate.sampling import GenerationConfig

    clips, captions, truth = read_retrieval_set(args.captions, _clips(args.audio) if args.audio else None)
    check_audio_files(clips)
    which = ("text2audio", "audio2text") if args.direction == "both" else (args.direction,)
    with user_errors():
        probe = Captioner.from_checkpoint(args.checkpoint, device=args.device)
        longest = max(len(probe.tokenizer.encode_text(c)) for c in captions) + 1
        cfg = CaptionConfig(seconds=args.seconds, context=probe.config.context,
                            generation=GenerationConfig(max_new_tokens=longest, greedy=True))
        captioner = Captioner(probe.model, probe.tokenizer, cfg)
        captioner.source = probe.source
        report = evaluate_retrieval(captioner, clips, captions, truth, which, args.top_k, args.score, args.batch_size)
    if args.out:
        from mmtok.atomic import write_text_atomic

        write_text_atomic(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    if "directions" in report:
        print("direction\tR@1\tR@5\tR@10\tmAP@10\tmedian_rank")
        for d, r in report["directions"].items():
            for label, m in ((d, r["metrics"]), (f"{d}_random", r["random"])):
                print(f"{label}\t{m['R@1']:.3f}\t{m['R@5']:.3f}\t{m['R@10']:.3f}\t{m['mAP@10']:.3f}\t{m['median_rank']:.1f}")
    else:
        for j, top in enumerate(report["rankings"]["text2audio"]):
            print(f"{captions[j]}\t" + "\t".join(clips[i] for i in top))
    return 0


def run_eval_tasks(args) -> int:
    from mmtok.cli import CLIError
    from mmtok.demo.attributes import DEMO_TASK_GRAMMARS
    from mmtok.eval.tasks import evaluate_tasks, write_tasks_report
    from mmtok.generate.captioner import Captioner

    if not any((args.qa, args.segments, args.playlist, args.retrieval, args.music)):
        raise CLIError("give at least one of --qa, --segments, --playlist, --retrieval, --music")
    with user_errors():
        captioner = Captioner.from_checkpoint(args.checkpoint, caption_config(args), device=args.device)
        report = evaluate_tasks(captioner, qa=args.qa, segments=args.segments, playlist=args.playlist,
                                retrieval=args.retrieval, music=args.music,
                                grammars=DEMO_TASK_GRAMMARS if args.attributes else None, limit=args.limit,
                                meteor=args.meteor, music_seconds=args.music_seconds,
                                music_limit=args.music_limit)
    json_path, md_path = write_tasks_report(args.out, report)
    print(f"wrote {json_path} and {md_path}")
    return 0
