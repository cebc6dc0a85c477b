"""`mmtok caption` (audio -> text) and `mmtok generate` (text -> audio) from a checkpoint."""

from __future__ import annotations

import json
from contextlib import contextmanager

from mmtok.data.tasks import SECTION_TEXTS


def add_checkpoint_flags(p) -> None:
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="run directory (its latest checkpoint) or a checkpoints/step_* directory")
    p.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")


def add_sampling_flags(p, greedy: bool) -> None:
    """Decoding flags shared by caption, generate and eval (see GenerationConfig)."""
    g = p.add_argument_group("decoding")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--greedy", dest="greedy", action="store_true", default=greedy,
                      help="argmax decoding" + (" (default)" if greedy else ""))
    mode.add_argument("--sample", dest="greedy", action="store_false",
                      help="sample with temperature/top-k/top-p" + ("" if greedy else " (default)"))
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    g.add_argument("--top-k", type=int, default=0 if greedy else 250,
                   help=f"sample among the k likeliest ids, 0 = all (default {0 if greedy else 250})")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, 1 = off (default 1.0)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL penalty, 1 = off (default 1.0)")
    cfg_coef = 1.0 if greedy else 3.0  # captions: off (it costs accuracy); music: MusicGen's 3
    g.add_argument("--cfg-coef", type=float, default=cfg_coef,
                   help="classifier-free guidance against the prompt with its condition left out "
                        "(the text / audio template); > 1 follows the audio or caption more closely, "
                        f"twice the compute; 1 = off (default {cfg_coef:g})")
    g.add_argument("--seed", type=int, default=None, help="seed for sampling (same seed, same output)")
    g.add_argument("--instruction", default=None,
                   help="instruction sentence after the task token (default: none, as half of training)")


def generation_config(args, max_new_tokens: int = 256):
    from mmtok.generate.sampling import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, greedy=args.greedy, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                            cfg_coef=args.cfg_coef, seed=args.seed).validate()


@contextmanager
def user_errors():
    """Checkpoint and tool errors become one-line CLI errors (no traceback)."""
    from mmtok.checkpoint import CheckpointError
    from mmtok.cli import CLIError
    from mmtok.eval.caption_metrics import MetricToolError

    try:
        yield
    except (CheckpointError, MetricToolError) as e:
        raise CLIError(str(e)) from None


def caption_config(args):
    from mmtok.generate.captioner import CaptionConfig

    return CaptionConfig(seconds=args.seconds, instruction=args.instruction, batch_size=args.batch_size,
                         section_text=getattr(args, "section_text", None) or CaptionConfig.section_text,
                         generation=generation_config(args, args.max_new_tokens))


def add_caption_flags(p) -> None:
    p.add_argument("--seconds", type=float, default=None,
                   help="caption the first N seconds (default: the most that fits the model's context)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="longest caption in tokens (default 96)")
    p.add_argument("--batch-size", type=int, default=8, help="captions decoded together (default 8)")
    add_sampling_flags(p, greedy=True)


def register(subparsers) -> None:
    p = subparsers.add_parser("caption", help="caption audio files with a trained model",
                              description="Print one caption per audio file (any length, sample rate "
                                          "or channel count the tokenizer reads).")
    add_checkpoint_flags(p)
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument("--windows", type=float, default=None, metavar="SECONDS",
                   help="caption the whole file in windows of this length instead of its start")
    p.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                   help="window step with --windows (default: the window length, no overlap)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--timestamps", action="store_true",
                      help="a time-stamped caption per file (`0:00-0:05 ...`), its sections as JSON")
    mode.add_argument("--playlist", action="store_true",
                      help="one caption of all the files together (2 to 8 clips, each an equal share of the context)")
    p.add_argument("--section-text", choices=SECTION_TEXTS, default=None,
                   help="with --timestamps, what each section says: 'joint', the text written beside the stamps "
                        "(default), or 'recaption', the caption of the section's own audio (one more pass)")
    add_caption_flags(p)
    p.set_defaults(func=run_caption)

    p = subparsers.add_parser("generate", help="generate music from a text description",
                              description="Text -> audio tokens (whole frames) -> codec decode -> wav.")
    add_checkpoint_flags(p)
    p.add_argument("text", help='description, e.g. "a slow piano piece in D minor"')
    p.add_argument("--seconds", type=float, default=5.0, help="length of the audio (default 5)")
    p.add_argument("--out", required=True, help="output wav file")
    add_sampling_flags(p, greedy=False)
    p.set_defaults(func=run_generate)


def check_audio_files(paths) -> None:
    """Open every file's header before any work: all unreadable or missing files are named in
    one error, in a second, instead of the first one ending a long batch."""
    from mmtok.cli import CLIError
    from mmtok.tokenizer.audio_io import AudioInputError, AudioSource

    problems = []
    for path in paths:
        try:
            AudioSource(path).close()
        except (AudioInputError, OSError) as e:
            problems.append(str(e))
    if problems:
        raise CLIError(f"{len(problems)} of {len(paths)} audio files cannot be read, nothing was captioned: "
                       + "; ".join(problems))


def run_caption(args) -> int:
    from mmtok.cli import CLIError
    from mmtok.generate.captioner import Captioner
    from mmtok.tokenizer.audio_io import AudioInputError

    if args.hop is not None and args.windows is None:
        raise CLIError("--hop needs --windows")
    if args.windows is not None and args.seconds is not None:
        raise CLIError("--seconds and --windows exclude each other")
    if args.windows is not None and (args.timestamps or args.playlist):
        raise CLIError("--windows excludes --timestamps and --playlist")
    if args.section_text is not None and not args.timestamps:
        raise CLIError("--section-text needs --timestamps")
    check_audio_files(args.audio)
    if args.playlist:
        with user_errors():
            captioner = Captioner.from_checkpoint(args.checkpoint, caption_config(args), device=args.device)
            caption = captioner.caption_playlist(args.audio)
        print(json.dumps({"audios": args.audio, "caption": caption}, ensure_ascii=False) if args.json else caption)
        return 0
    # A file whose header reads but whose samples do not decode (truncated, corrupt frames, NaN)
    # is reported at the end; the other files' captions are still printed (exit status 2).
    failed = []
    with user_errors():
        captioner = Captioner.from_checkpoint(args.checkpoint, caption_config(args), device=args.device)
        if args.windows is not None:
            for path in args.audio:
                try:
                    windows = captioner.caption_windows(path, window=args.windows, hop=args.hop)
                except AudioInputError as e:
                    failed.append(str(e))
                    continue
                if args.json:
                    print(json.dumps({"audio": path, "windows": [
                        {"start": round(a, 3), "end": round(b, 3), "caption": c} for a, b, c in windows]},
                        ensure_ascii=False), flush=True)
                else:
                    for a, b, c in windows:
                        print(f"{path}\t{a:.2f}-{b:.2f}\t{c}", flush=True)
        else:
            encoded = []  # every file is encoded before decoding starts: captions batch across files
            for path in args.audio:
                try:
                    encoded.append((path, captioner.encode(path)))
                except AudioInputError as e:
                    failed.append(str(e))
            for i in range(0, len(encoded), args.batch_size):
                paths, codes = zip(*encoded[i : i + args.batch_size])
                if args.timestamps:  # JSON always: the sections are the answer
                    for path, (text, segments) in zip(paths, captioner.timestamps_codes(list(codes))):
                        print(json.dumps({"audio": path, "caption": text, "segments": segments}, ensure_ascii=False),
                              flush=True)
                    continue
                for path, caption in zip(paths, captioner.caption_codes(list(codes))):
                    print(json.dumps({"audio": path, "caption": caption}, ensure_ascii=False) if args.json
                          else f"{path}\t{caption}", flush=True)
    if failed:
        raise CLIError(f"{len(failed)} of {len(args.audio)} audio files failed, the others are captioned above: "
                       + "; ".join(failed))
    return 0


def run_generate(args) -> int:
    from mmtok.checkpoint import load_for_inference
    from mmtok.generate.music import generate_music, write_wav

    with user_errors():
        model, _, tokenizer = load_for_inference(args.checkpoint, device=args.device)
        wav, sr = generate_music(model, tokenizer, args.text, args.seconds, generation_config(args),
                                 args.instruction)
        path = write_wav(args.out, wav, sr)
    print(f"{path}\t{wav.shape[-1] / sr:.3f} s\t{sr} Hz")
    return 0
