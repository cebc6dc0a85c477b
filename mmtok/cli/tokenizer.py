"""`mmtok tokenizer ...` (build / encode / decode / inspect) and `mmtok codec fit`.

ids files: `IDS.npy` (int64 ids) plus a sidecar `IDS.json` recording the layout hash, what the
ids are (text or audio) and, for audio, the exact sample count; decoding with a tokenizer of
another layout fails with a clear error.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path


def register(subparsers) -> None:
    from mmtok.tokenizer.patterns import PATTERNS, SEMANTIC_PLACEMENTS  # light (numpy); torch is imported by handlers

    tok = subparsers.add_parser("tokenizer", help="build, run and inspect the text+audio tokenizer")
    sub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("build", help="train SentencePiece + attach a codec -> tokenizer directory")
    p.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 text files (one sentence per line)")
    p.add_argument("--codec", required=True, help="encodec_24khz, encodec_48khz or a `mmtok codec fit` directory")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="kbps, picks the number of codebooks (default: 6 for encodec, the largest for fitted)")
    p.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece pieces at most")
    p.add_argument("--out", required=True, help="tokenizer directory to create (atomically)")
    p.add_argument("--model-type", default="bpe", choices=("bpe", "unigram"))
    p.add_argument("--serialization", default="frame_major", choices=PATTERNS)
    p.add_argument("--n-codebooks", type=int, default=None, help="keep only the first k codebooks in ids")
    p.add_argument("--encodec-dir", default=None,
                   help="local encodec checkpoint directory (offline); default $MMTOK_ENCODEC_DIR")
    p.add_argument("--loudness", default="lufs:-23",
                   help="loudness rule inputs are brought to before encoding: lufs[:TARGET] (BS.1770, default "
                        "lufs:-23), rms[:TARGET] (dBFS) or none; encodec_48khz always takes none")
    p.add_argument("--semantic", default=None, metavar="AUDIO_OR_DIR",
                   help="add a semantic stream (one k-means id of pitch/onset features per frame, beside the "
                        "codes): a saved semantic tokenizer directory (semantic.json), or training audio (a "
                        "directory, a file, or a .txt/.jsonl manifest) to fit one on")
    p.add_argument("--semantic-clusters", type=int, default=256, help="k-means clusters when fitting (ids in the block)")
    p.add_argument("--semantic-features", default="chroma+flux",
                   help="spectral feature parts joined by '+': chroma, logfreq, flux, mfcc")
    p.add_argument("--semantic-seed", type=int, default=0, help="k-means seeding and frame subsample")
    p.add_argument("--semantic-placement", default="prefix", choices=SEMANTIC_PLACEMENTS,
                   help="where the semantic ids go: prefix (all of a clip's ids before its codes, AudioLM's order; "
                        "default) or frame (each beside its frame's codes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_build)

    p = sub.add_parser("encode", help="text or an audio file -> IDS.npy (+ IDS.json sidecar)")
    p.add_argument("--tokenizer", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="a string to encode")
    src.add_argument("--audio", help="an audio file to encode (any rate/channels, see README)")
    p.add_argument("--allow-special", action="store_true", help="map <soa>, <eos>, ... in --text to their ids")
    p.add_argument("--out", required=True, help="IDS.npy")
    p.add_argument("--encodec-dir", default=None)
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="IDS.npy -> OUT.wav (audio) or OUT.txt (text)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("ids", help="IDS.npy written by `mmtok tokenizer encode` (with its IDS.json)")
    p.add_argument("--out", required=True, help="OUT.wav or OUT.txt")
    p.add_argument("--encodec-dir", default=None)
    p.set_defaults(func=_decode)

    p = sub.add_parser("inspect", help="print a tokenizer directory's layout, codec and sizes (JSON)")
    p.add_argument("dir")
    p.set_defaults(func=_inspect)

    codec = subparsers.add_parser("codec", help="fit a small EnCodec-architecture codec on local audio")
    csub = codec.add_subparsers(dest="codec_command", required=True, metavar="SUBCOMMAND")
    p = csub.add_parser("fit", help="train a codec; the output directory loads as --codec PATH")
    p.add_argument("--audio", required=True, help="audio directory, file, or manifest (.txt paths / .jsonl)")
    p.add_argument("--out", required=True, help="codec directory (re-running resumes from its checkpoint)")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget, in total over resumed runs of the same --out (k-means is extra)")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps in total")
    p.add_argument("--preset", default="small",
                   help="tiny (tests, seconds) or small (CPU demo, 25 Hz, 8x1024 codes); see mmtok.codec.fit.PRESETS")
    p.add_argument("--adversarial", action="store_true", help="add the MS-STFT discriminator + loss balancer")
    p.add_argument("--seed", type=int, default=0, help="crops, which files the audio cap keeps, k-means, init")
    p.add_argument("--name", default=None, help="codec name (default mmtok_<preset>)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_fit)


def _cli_errors(fn):
    """Errors a user can fix -> CLIError (printed without a traceback, exit code 2)."""
    from mmtok.cli import CLIError

    def wrapped(args):
        try:
            return fn(args)
        except FileNotFoundError:
            raise  # the dispatcher reports these itself
        except (OSError, RuntimeError) as e:  # e.g. FileExistsError, a codec that collapsed in fitting
            raise CLIError(str(e)) from None

    return wrapped


def _load(args):
    from mmtok import MultimodalTokenizer

    return MultimodalTokenizer.from_pretrained(args.tokenizer, repository=args.encodec_dir)


def _write_atomic(path: Path, write) -> None:
    from mmtok.atomic import atomic_path

    with atomic_path(path) as tmp:
        write(tmp)


def sidecar_of(ids_path) -> Path:
    return Path(ids_path).with_suffix(".json")


def semantic_for_build(spec: str, codec: str, bandwidth, repository, n_clusters: int, parts: str, seed: int):
    """`--semantic`: a saved semantic tokenizer directory, or audio to fit a spectral one on (at
    the codec's frame rate, so the fit sees frames like the ones it will label)."""
    from mmtok.codec.audio import find_audio
    from mmtok.tokenizer.codec import load_codec
    from mmtok.tokenizer.semantic import CONFIG_FILE, SemanticTokenizer, fit_spectral

    if (Path(spec) / CONFIG_FILE).is_file():
        return SemanticTokenizer.load(spec)
    files = find_audio(spec)
    frame_rate = load_codec(codec, bandwidth, repository).frame_rate
    return fit_spectral(files, n_clusters, tuple(p for p in parts.split("+") if p), frame_rate, seed)


@_cli_errors
def _build(args):
    from mmtok import MultimodalTokenizer

    semantic = None
    if args.semantic:
        semantic = semantic_for_build(args.semantic, args.codec, args.bandwidth, args.encodec_dir,
                                      args.semantic_clusters, args.semantic_features, args.semantic_seed)
    tok = MultimodalTokenizer.build(args.text, codec=args.codec, out=args.out, bandwidth=args.bandwidth,
                                    vocab_size=args.vocab_size, model_type=args.model_type,
                                    serialization=args.serialization, n_codebooks=args.n_codebooks,
                                    repository=args.encodec_dir, overwrite=args.overwrite, loudness=args.loudness,
                                    semantic=semantic, semantic_placement=args.semantic_placement)
    print(json.dumps(summary(tok, args.out), indent=2))


@_cli_errors
def _encode(args):
    import numpy as np

    tok = _load(args)
    meta = {"layout_hash": tok.layout.hash, "tokenizer": str(Path(args.tokenizer).resolve())}
    if args.text is not None:
        ids = tok.encode_text(args.text, allow_special=args.allow_special)
        meta["kind"] = "text"
    else:
        codes = tok.encode_audio(args.audio)
        ids = tok.codes_to_ids(codes)
        meta.update(kind="audio", source=str(args.audio), n_samples=codes.n_samples,
                    sample_rate=codes.sample_rate, codec=codes.codec, n_frames=codes.n_frames,
                    gain_db=codes.gain_db)
    out = Path(args.out)
    _write_atomic(sidecar_of(out), lambda p: p.write_text(json.dumps(meta, indent=2)))

    def save(p):
        with open(p, "wb") as f:
            np.save(f, np.asarray(ids, dtype=np.int64))

    _write_atomic(out, save)
    print(json.dumps({"out": str(out), "n_ids": len(ids), **meta}))


@_cli_errors
def _decode(args):
    import numpy as np
    import soundfile as sf

    tok = _load(args)
    path, meta_path = Path(args.ids), sidecar_of(args.ids)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing sidecar of {path} (it records the layout hash); "
                                f"write ids with `mmtok tokenizer encode`")
    meta = json.loads(meta_path.read_text())
    tok.layout.require(meta.get("layout_hash", "?"), str(path))
    ids = np.load(path, allow_pickle=False)
    out = Path(args.out)
    if out.suffix == ".txt":
        text = tok.decode_text(ids, keep_special=True)
        _write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
        print(json.dumps({"out": str(out), "chars": len(text)}))
    elif out.suffix == ".wav":
        codes = tok.ids_to_codes(ids, source=str(path))
        if meta.get("n_samples") and meta.get("codec") == codes.codec and meta.get("n_frames") == codes.n_frames:
            codes.n_samples = int(meta["n_samples"])  # exact length from the sidecar
            codes.gain_db = float(meta.get("gain_db", 0.0))  # and the input's level
        wav, sr = tok.decode_audio(codes)
        _write_atomic(out, lambda p: sf.write(p, wav.T, sr, format="WAV", subtype="FLOAT"))
        print(json.dumps({"out": str(out), "seconds": wav.shape[1] / sr, "sample_rate": sr}))
    else:
        raise ValueError(f"{out}: output must end in .wav (audio) or .txt (text)")


def summary(tok, path) -> dict:
    lay, cfg = tok.layout, tok.config
    return {
        "dir": str(path), "vocab_size": len(tok), "layout_hash": lay.hash,
        "ranges": {"text": [0, lay.text_size], "special": [lay.special_base, lay.scale_base],
                   "scale": [lay.scale_base, lay.semantic_base], "semantic": [lay.semantic_base, lay.audio_base],
                   "audio": [lay.audio_base, lay.audio_end], "padding": [lay.audio_end, lay.vocab_size]},
        "special_tokens": {t: lay.id_of(t) for t in lay.special_tokens},
        "codec": cfg.codec, "bandwidth_kbps": cfg.bandwidth, "n_codebooks": cfg.n_codebooks,
        "codebook_size": lay.codebook_size, "serialization": cfg.serialization,
        "sample_rate": cfg.sample_rate, "channels": cfg.channels, "frame_rate": cfg.frame_rate,
        "audio_tokens_per_second": round(tok.audio_tokens_per_second, 2),  # + 48 kHz scale bytes
        "fitted_codec_sha256": cfg.codec_sha256,
        "loudness": asdict(tok.loudness),
        "semantic": None if tok.semantic is None else {
            "n_clusters": tok.semantic.n_clusters, "placement": cfg.semantic_placement,
            "features": tok.semantic.features.config(),
            "fit": tok.semantic.fit_info, "sha256": cfg.semantic_sha256},
    }


@_cli_errors
def _inspect(args):
    from mmtok import MultimodalTokenizer

    print(json.dumps(summary(MultimodalTokenizer.from_pretrained(args.dir), args.dir), indent=2))


@_cli_errors
def _fit(args):
    from mmtok.codec.fit import fit_codec

    out = fit_codec(args.audio, args.out, minutes=args.minutes, preset=args.preset,
                    adversarial=args.adversarial, seed=args.seed, name=args.name,
                    progress=not args.no_progress, max_steps=args.max_steps)
    config = json.loads((Path(out) / "codec.json").read_text())
    print(json.dumps({"out": str(out), "sha256": config["sha256"], "params": config["params"],
                      **config["training"]}, indent=2))
