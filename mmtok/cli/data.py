"""`mmtok data ...`: build the demo corpus, import a published data set, shard a manifest, inspect a
manifest or a loader."""

from __future__ import annotations

import json
import sys

from mmtok.demo.corpus import CAPTIONS_PER_CLIP


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="demo corpus, manifest -> shards, loader statistics")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("demo-corpus", help="render real music21 pieces into captioned clips + manifests")
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    p.add_argument("--size", default="default", choices=("smoke", "default", "large"),
                   help="smoke ~72 clips (minutes), default ~2.8k clips (~16 min on 2 cores), large ~36k (hours)")
    p.add_argument("--pieces", type=int, default=None, help="custom size: number of pieces (overrides --size)")
    p.add_argument("--clips-per-piece", type=int, default=None, help="custom size: clips per piece")
    p.add_argument("--ood-pieces", type=int, default=None,
                   help="custom size: pieces of the held-out collections (the out-of-distribution split; 0: none)")
    p.add_argument("--captions-per-clip", type=int, default=CAPTIONS_PER_CLIP,
                   help=f"wordings per clip (default {CAPTIONS_PER_CLIP}): the first is `text`, the others "
                   "`references` (training draws one each time)")
    p.add_argument("--seed", type=int, default=0, help="the corpus is a deterministic function of it")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all cores)")
    p.add_argument("--clip-seconds", type=float, default=5.0, help="clip length (sets the token budget)")
    p.add_argument("--sample-rate", type=int, default=24000, help="rendered audio rate (Hz)")
    p.set_defaults(func=_demo_corpus)

    p = sub.add_parser("demo-tasks", help="task data from a demo corpus: Q&A, multi-section pieces, playlists")
    p.add_argument("--corpus", required=True, help="a built demo corpus directory (its manifests and audio)")
    p.add_argument("--out", required=True, help="output directory: {split}_qa/_segments/_playlist.jsonl, audio/")
    p.add_argument("--seed", type=int, default=0, help="the task data is a deterministic function of it")
    p.add_argument("--segments-per-clip", type=float, default=0.5, help="multi-section pieces per clip of a split")
    p.add_argument("--playlists-per-clip", type=float, default=0.5, help="playlists per clip of a split")
    p.set_defaults(func=_demo_tasks)

    p = sub.add_parser("shard", help="JSONL manifest -> WebDataset shards of codec codes")
    p.add_argument("manifest", help="JSONL: one {audio, text, ...} object per line")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory (its codec encodes the audio)")
    p.add_argument("--out", required=True, help="shard directory (shared by splits; re-running resumes)")
    p.add_argument("--split", default=None, help="shard name prefix (default: manifest name, e.g. train)")
    p.add_argument("--max-samples", type=int, default=1000, help="samples per shard at most")
    p.add_argument("--max-bytes", type=int, default=256 << 20, help="estimated bytes per shard at most")
    p.add_argument("--workers", type=int, default=1, help="encoding processes (each loads the tokenizer)")
    p.add_argument("--include-audio", action="store_true", help="also store the source audio as FLAC")
    p.add_argument("--min-seconds", type=float, default=0.5, help="shorter audio is skipped and reported")
    p.set_defaults(func=_shard)

    p = sub.add_parser("stats", help="run the loader over some batches: packing efficiency, templates")
    p.add_argument("shards", help="shard index (shards.jsonl#train), directory or brace pattern")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="shard order, shuffling and templates")
    p.set_defaults(func=_stats)

    p = sub.add_parser("import", help="a published caption or Q&A data set -> JSONL manifest(s)")
    p.add_argument("format", help="musiccaps, song_describer, musicbench, audiocaps, clotho, musicqa, musicinstruct "
                   "or audiocraft")
    p.add_argument("source", help="the data set's file (CSV / JSON / JSONL) or the directory holding its files")
    p.add_argument("--audio-root", required=True, help="directory holding the audio (searched recursively)")
    p.add_argument("--out", required=True, help="manifest to write; `{split}` in it writes one per split")
    p.add_argument("--split", action="append", choices=("train", "valid", "test"), default=None,
                   help="keep only this split (repeatable; default: all)")
    p.add_argument("--audio-pattern", action="append", default=None, metavar="PATTERN",
                   help='audio file name from row fields, e.g. "{ytid}.wav" (repeatable; replaces the known '
                   "patterns; without an extension each common one is tried)")
    p.add_argument("--strict", action="store_true", help="any row without usable audio is an error")
    p.add_argument("--report", default=None, help="report of the rows left out (default: beside the manifest)")
    p.add_argument("--musiccaps-csv", default=None,
                   help="musicinstruct: MusicCaps' musiccaps-public.csv, for each clip's start and end")
    p.set_defaults(func=_import)

    p = sub.add_parser("manifest-stats", help="items per split and task, audio hours, caption lengths, missing files")
    p.add_argument("manifests", nargs="+", help="JSONL manifest(s)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory: also count text tokens")
    p.set_defaults(func=_manifest_stats)


def _demo_corpus(args) -> None:
    from mmtok.demo.corpus import build_demo_corpus, corpus_size

    size = corpus_size(args.size, args.pieces, args.clips_per_piece, args.ood_pieces)
    summary = build_demo_corpus(args.out, size=size, seed=args.seed, workers=args.workers,
                                clip_seconds=args.clip_seconds, sample_rate=args.sample_rate,
                                captions_per_clip=args.captions_per_clip)  # fmt: skip
    print(json.dumps(summary, indent=2))


def _demo_tasks(args) -> None:
    from mmtok.demo.tasks import build_task_data

    print(json.dumps(build_task_data(args.corpus, args.out, seed=args.seed, segments_per_clip=args.segments_per_clip,
                                     playlists_per_clip=args.playlists_per_clip), indent=2))


def _shard(args) -> None:
    from mmtok.data.shard import ShardConfig, shard_manifest

    cfg = ShardConfig(max_samples=args.max_samples, max_bytes=args.max_bytes, include_audio=args.include_audio,
                      min_seconds=args.min_seconds, workers=args.workers)  # fmt: skip
    summary = shard_manifest(args.manifest, args.tokenizer, args.out, split=args.split, cfg=cfg)
    print(json.dumps(summary, indent=2))
    if summary["skipped"]:
        print(f"{summary['skipped']} input(s) skipped: see {args.out}/{summary['split']}-report.jsonl")


def _stats(args) -> None:
    from mmtok.data.loader import DataConfig
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    tok = MultimodalTokenizer.from_pretrained(args.tokenizer)
    cfg = DataConfig(train_shards=args.shards, seq_len=args.seq_len, batch_size=args.batch_size,
                     workers=args.workers, resampled=False, seed=args.seed)  # fmt: skip
    real = total = n = 0
    for batch in cfg.build(tok):
        real += int((batch.doc_ids >= 0).sum())
        total += batch.doc_ids.numel()
        n += 1
        if n == args.batches:
            break
    print(json.dumps({"batches": n, "positions": total, "packing_efficiency": round(real / max(total, 1), 4)}))


def _import(args) -> int:
    from mmtok.data.importers import MissingAudioError, import_dataset

    try:
        summary = import_dataset(args.format, args.source, args.audio_root, args.out, splits=args.split,
                                 patterns=args.audio_pattern, strict=args.strict, report=args.report,
                                 musiccaps_csv=args.musiccaps_csv)  # fmt: skip
    except MissingAudioError as e:  # --strict, or no row has audio (bad input files raise ValueError: main prints it)
        print(f"mmtok data: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    if summary["problems"]:
        reasons = ", ".join(f"{n} {r}" for r, n in summary["problem_reasons"].items())
        print(f"{summary['problems']} of {summary['rows']} row(s) left out ({reasons}): see {summary['report']}")
    return 0


def _manifest_stats(args) -> None:
    from mmtok.data.manifest_stats import manifest_stats

    tok = None
    if args.tokenizer:
        from mmtok.tokenizer.multimodal import MultimodalTokenizer

        tok = MultimodalTokenizer.from_pretrained(args.tokenizer)
    print(json.dumps(manifest_stats(args.manifests, tok), indent=2))
