"""Codecs: load an EnCodec model (pretrained or fitted by `mmtok codec fit`) and run it.

A codec is named by an id:
- `encodec_24khz`: mono, 75 Hz, codebooks chosen by bandwidth (1.5/3/6/12/24 kbps -> 2/4/8/16/32).
- `encodec_48khz`: stereo, 150 Hz, 1 s segments each with its own float32 scale (kept, so our
  decode equals encodec's), bandwidth 3/6/12/24 kbps -> 2/4/8/16 codebooks.
- a PATH to a directory written by `mmtok codec fit` (codec.json + model.safetensors).

Pretrained weights come through encodec's own loader: downloaded to the torch hub cache, or,
offline, from a local checkpoint directory (`repository=` / `MMTOK_ENCODEC_DIR`) holding
encodec's checkpoint file (`encodec_24khz-d7cc33bc.th`, `encodec_48khz-7e698e3e.th`). A directory
may instead hold `encodec_24khz-<sha256 prefix>.th` (weights made elsewhere, e.g. by our tests);
encodec's `_get_pretrained` verifies the prefix against the file either way.

Long audio is encoded window by window (see `Codec.encode`), so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mmtok.tokenizer.audio_io import AudioSource, CodecInput
from mmtok.tokenizer.codes import AudioCodes, segment_frame_counts
from mmtok.tokenizer.loudness import LoudnessRule, apply_gain

PRETRAINED = {  # codec id -> (encodec factory name, official checkpoint file, default kbps)
    "encodec_24khz": ("encodec_model_24khz", "encodec_24khz-d7cc33bc.th", 6.0),
    "encodec_48khz": ("encodec_model_48khz", "encodec_48khz-7e698e3e.th", 6.0),
}
FITTED_CONFIG = "codec.json"
FITTED_WEIGHTS = "model.safetensors"
ENV_REPOSITORY = "MMTOK_ENCODEC_DIR"
LOUDNESS_SECONDS = 600.0  # the loudness of longer inputs is measured on their first 10 minutes (memory)
MIN_STABLE_AGREEMENT = 0.5  # collapse guard: share of codebook-0 codes unchanged by a 0.1% gain change


class CodecCollapseError(ValueError):
    """The codec's codes carry no information (all 0, or ~one code per codebook)."""


class CodecFileError(ValueError):
    """A codec checkpoint file is not what its name says, or not a checkpoint of that codec."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- building models ----------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_weight_norm():
    """encodec builds its convs with the deprecated torch.nn.utils.weight_norm; hide that warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        yield


def build_encodec(arch: dict):
    """An `encodec.EncodecModel` from a fitted codec's architecture dict (see mmtok.codec.fit.PRESETS)."""
    with quiet_weight_norm():
        return _build_encodec(arch)


def _build_encodec(arch: dict):
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    seanet = dict(channels=arch["channels"], dimension=arch["dimension"], n_filters=arch["n_filters"],
                  ratios=list(arch["ratios"]), lstm=arch["lstm"], causal=arch["causal"],
                  norm=arch["norm"], n_residual_layers=arch.get("n_residual_layers", 1))
    encoder, decoder = SEANetEncoder(**seanet), SEANetDecoder(**seanet)
    quantizer = ResidualVectorQuantizer(dimension=arch["dimension"], n_q=arch["n_q"], bins=arch["bins"],
                                        threshold_ema_dead_code=arch.get("dead_code_threshold", 2))
    model = EncodecModel(encoder, decoder, quantizer, list(arch["target_bandwidths"]),
                         arch["sample_rate"], arch["channels"], normalize=False, segment=None,
                         name=arch["name"])
    return model


def checkpoint_files(name: str, repository=None) -> list[Path]:
    """Local checkpoints of pretrained `name`, in the order they are tried: in `repository` (or
    $MMTOK_ENCODEC_DIR), then in the torch hub cache where encodec's own download puts them
    (`torch.hub.get_dir()/checkpoints`); in each, the official file name first, then any
    `<name>-<sha256 prefix>.th` (the scheme encodec names its files by)."""
    repository = repository or os.environ.get(ENV_REPOSITORY)
    dirs = [Path(repository)] if repository else []
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    _, official, _ = PRETRAINED[name]
    found: list[Path] = []
    for d in dirs:
        found += [p for p in [d / official, *sorted(d.glob(f"{name}-*.th"))] if p.is_file() and p not in found]
    return found


def pretrained_available(name: str, repository=None) -> bool:
    """Whether `name`'s weights can be loaded without a download (see `checkpoint_files`)."""
    return bool(checkpoint_files(name, repository))


def verify_checkpoint_name(path: Path) -> None:
    """encodec's file names end in the first hex digits of the file's sha256: check them, so a
    file that is not what its name says is refused before it is loaded."""
    expected = path.stem.rsplit("-", 1)[-1]
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise CodecFileError(
            f"{path}: its sha256 starts with {actual[:len(expected)]}, its name says {expected} (a different "
            f"or corrupt file: encodec names its checkpoints <name>-<first hex digits of sha256>.th)")


def _load_pretrained(name: str, repository):
    from encodec import EncodecModel

    factory_name, official, _ = PRETRAINED[name]
    factory = getattr(EncodecModel, factory_name)
    files = checkpoint_files(name, repository)
    if not files:
        if repository or os.environ.get(ENV_REPOSITORY):
            where = repository or os.environ.get(ENV_REPOSITORY)
            raise FileNotFoundError(f"{where}: no {official} (or {name}-<sha256 prefix>.th) checkpoint")
        try:
            with quiet_weight_norm():
                return factory(pretrained=True)  # encodec's own download (torch hub cache)
        except Exception as e:
            raise FileNotFoundError(
                f"cannot get pretrained {name} weights ({type(e).__name__}: {e}); offline, put "
                f"{official} in a directory and pass it as repository / set {ENV_REPOSITORY}"
            ) from None
    verify_checkpoint_name(files[0])
    with quiet_weight_norm():
        model = factory(pretrained=False)
    try:
        model.load_state_dict(torch.load(files[0], map_location="cpu", weights_only=True))
    except Exception as e:
        raise CodecFileError(f"{files[0]}: not a {name} checkpoint ({type(e).__name__}: {e})") from None
    model.name = name
    return model.eval()


# ---- the codec ----------------------------------------------------------------------------------
class Codec:
    """An EnCodec model at one bandwidth: waveform <-> `AudioCodes`."""

    def __init__(self, model, codec_id: str, bandwidth: float, source: str):
        self.model = model.eval()
        self.id = codec_id  # what AudioCodes.codec records
        self.source = source  # where the weights came from (name, repository or directory)
        self.model.set_target_bandwidth(bandwidth)
        self.bandwidth = bandwidth
        self.sample_rate = model.sample_rate
        self.channels = model.channels
        self.hop = int(np.prod(model.encoder.ratios))
        self.frame_rate = model.frame_rate
        self.codebook_size = model.quantizer.bins
        self.n_codebooks = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth)
        self.segment_length = model.segment_length  # None, or 48000 for encodec_48khz
        self.segment_stride = model.segment_stride
        self.has_scales = bool(model.normalize)
        self.causal = any(getattr(m, "causal", False) for m in model.encoder.modules())

    @property
    def frames_per_segment(self) -> int | None:
        return None if self.segment_length is None else math.ceil(self.segment_length / self.hop)

    # ---- encode ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio, sample_rate: int | None = None, chunk_seconds: float = 8.0,
               context_seconds: float = 2.0, batch_seconds: float = 10.0,
               loudness: LoudnessRule | None = None) -> AudioCodes:
        """File path or waveform -> AudioCodes, in windows batched together.

        `loudness`: the rule that scales the whole input to its target first (None: as it is);
        the gain is measured on the first LOUDNESS_SECONDS at the codec's rate and channels.

        Seam rule: audio longer than `chunk_seconds` is cut into windows starting at multiples
        of the hop; each is encoded with `context_seconds` of real audio on both sides (left only
        for causal codecs) whose frames are discarded, so a frame sees the same convolutional
        receptive field as in a whole-file encode (the LSTM state is warmed up by the context).
        Audio up to `chunk_seconds` is one window: exactly encodec's whole-file encode.
        Segment codecs (encodec_48khz) encode each 1 s segment independently anyway, so their
        windows are the segments themselves and the result is exact at any length.
        Equal-length windows (and 48 kHz segments) run as one batch of at most `batch_seconds`
        of audio, which bounds memory whatever the file length. Measured on the 2-core CPU
        (encodec_24khz, 1-min file): short windows are faster than a whole-file encode (8 s
        windows + 2 s context: 2.7 s vs 4.9 s) and batching windows is slower, so by default
        windows are not batched (10 s = one window); 48 kHz segments are.
        """
        with (audio if isinstance(audio, AudioSource) else AudioSource(audio, sample_rate)) as src:
            inp = CodecInput(src, self.sample_rate, self.channels)
            if loudness is not None and loudness.mode != "none":
                measured = inp.read(0, int(LOUDNESS_SECONDS * self.sample_rate)).numpy()  # (C, n)
                inp.gain_db = loudness.gain_db(measured, self.sample_rate)
            if self.segment_length is None:
                codes, scales = self._encode_windows(inp, chunk_seconds, context_seconds, batch_seconds), None
            else:
                codes, scales = self._encode_segments(inp, batch_seconds)
        return AudioCodes(codes=codes, n_samples=inp.n_samples, sample_rate=self.sample_rate,
                          codec=self.id, scales=scales, frames_per_segment=self.frames_per_segment,
                          gain_db=inp.gain_db)

    @staticmethod
    def _batches(windows: list[tuple[int, ...]], max_samples: int):
        """Consecutive equal-length (start, stop, ...) windows grouped, at most max_samples per group."""
        group: list[tuple[int, ...]] = []
        for w in windows:
            length = w[1] - w[0]
            if group and (length != group[0][1] - group[0][0] or (len(group) + 1) * length > max_samples):
                yield group
                group = []
            group.append(w)
        if group:
            yield group

    def _encode_windows(self, inp: CodecInput, chunk_seconds: float, context_seconds: float,
                        batch_seconds: float) -> np.ndarray:
        n = inp.n_samples
        unit = math.lcm(self.hop, inp.align)  # window starts must suit both the codec and resampler
        chunk = max(unit, round(chunk_seconds * self.sample_rate / unit) * unit)
        left = math.ceil(context_seconds * self.sample_rate / unit) * unit
        right = 0 if self.causal else left  # a causal frame never sees the future
        # (window start, window stop, kept start, kept stop): the window adds the context
        windows = [(max(0, a - left), min(n, a + chunk + right), a, min(a + chunk, n)) for a in range(0, n, chunk)]
        out = []
        for group in self._batches(windows, int(batch_seconds * self.sample_rate)):
            x = torch.stack([inp.read(w0, w1) for w0, w1, _, _ in group])  # (B, C, w)
            codes = self.model.encode(x)[0][0]  # (B, K, frames of a window)
            for i, (w0, _, a, b) in enumerate(group):
                f0 = (a - w0) // self.hop
                out.append(codes[i, :, f0 : f0 + math.ceil((b - a) / self.hop)])
        return torch.cat(out, dim=1).numpy().astype(np.int64)

    def _encode_segments(self, inp: CodecInput, batch_seconds: float):
        n, seg, stride = inp.n_samples, self.segment_length, self.segment_stride
        unit = math.lcm(stride, inp.align)  # reads start where resampling is exact
        chunk = max(unit, round(batch_seconds * self.sample_rate / unit) * unit)
        codes, scales = [], []
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            x = inp.read(a, min(n, b + seg - stride))  # (C, w): through the last segment's end
            segments = [(o - a, min(o + seg, n) - a) for o in range(a, b, stride)]
            for group in self._batches(segments, len(segments) * seg):
                batch = torch.stack([x[:, s0:s1] for s0, s1 in group])  # (B, C, seg)
                c, scale = self.model._encode_frame(batch)  # encodec's per-segment step, batched
                codes += list(c)
                scales += list(scale.view(-1))
        return torch.cat(codes, dim=1).numpy().astype(np.int64), torch.stack(scales).numpy()

    # ---- decode ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, codes: AudioCodes) -> torch.Tensor:
        """AudioCodes -> waveform (channels, n_samples), exactly encodec's `decode`, trimmed, at the
        input's level (the loudness rule's gain divided out)."""
        if codes.codec != self.id:
            raise ValueError(f"codes were made by codec {codes.codec}, this codec is {self.id}")
        c = torch.from_numpy(codes.codes)[None]  # (1, K, T)
        if self.segment_length is None:
            frames = [(c, None)]
        else:
            if codes.scales is None:
                raise ValueError(f"{self.id} needs per-segment scales to decode")
            counts = segment_frame_counts(codes.n_samples, self.frames_per_segment, self.hop)
            if len(counts) != len(codes.scales) or sum(counts) != codes.n_frames:
                raise ValueError(f"{codes.n_frames} frames / {len(codes.scales)} scales do not match "
                                 f"{codes.n_samples} samples ({len(counts)} segments, {sum(counts)} frames)")
            parts = torch.split(c, counts, dim=2)
            scales = torch.from_numpy(codes.scales)
            frames = [(p, scales[i].view(1, 1)) for i, p in enumerate(parts)]
        return apply_gain(self.model.decode(frames)[0, :, : codes.n_samples], -codes.gain_db)


def load_codec(spec: str, bandwidth: float | None = None, repository=None) -> Codec:
    """A codec by id (`encodec_24khz`, `encodec_48khz`) or fitted-codec directory path."""
    spec = str(spec)
    if spec in PRETRAINED:
        model = _load_pretrained(spec, repository)
        return Codec(model, spec, bandwidth or PRETRAINED[spec][2], source=str(repository or spec))
    path = Path(spec)
    if not (path / FITTED_CONFIG).is_file():
        raise FileNotFoundError(
            f"{spec}: not a codec id ({', '.join(PRETRAINED)}) nor a fitted codec directory "
            f"(no {FITTED_CONFIG}; make one with `mmtok codec fit`)"
        )
    return load_fitted_codec(path, bandwidth)


def load_fitted_codec(path, bandwidth: float | None = None, check: bool = True) -> Codec:
    """A `mmtok codec fit` directory -> Codec; checksum verified, collapsed codecs refused."""
    path = Path(path)
    config = json.loads((path / FITTED_CONFIG).read_text())
    weights = path / config.get("weights", FITTED_WEIGHTS)
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: fitted codec weights {weights.name} missing")
    digest = sha256_file(weights)
    if digest != config["sha256"]:
        raise ValueError(f"{weights}: checksum {digest[:12]} != recorded {config['sha256'][:12]} (corrupt or replaced)")
    model = build_encodec(config["arch"])
    model.load_state_dict(load_file(str(weights)))
    bw = bandwidth or max(config["arch"]["target_bandwidths"])
    codec = Codec(model, f"{config['arch']['name']}@{digest[:12]}", bw, source=str(path))
    if check:
        check_not_collapsed(codec, source=str(path))
    return codec


# ---- collapse guard -----------------------------------------------------------------------------
def probe_waveform(sample_rate: int, seconds: float = 4.0) -> np.ndarray:
    """A deterministic music-like probe: plucked harmonic notes over a moving bass, plus
    noise-burst percussion. Real codecs map it to many codes per codebook."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = np.zeros_like(t)
    note_len = 0.25
    for i, start in enumerate(np.arange(0, seconds, note_len)):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        m = (t >= start) & (t < start + note_len)
        tt = t[m] - start
        env = np.exp(-tt * (4 + 8 * (i % 3)))
        out[m] += sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 6)) * env * 0.3
        if i % 2 == 0:
            out[m] += rng.standard_normal(m.sum()) * np.exp(-tt * 30) * 0.2
    return out.astype(np.float32)


def collapse_problems(codes: np.ndarray, max_share: float = 0.95) -> list[str]:
    """Codebooks whose codes carry ~no information: one code, or one code on > max_share of frames."""
    problems = []
    for k, row in enumerate(np.asarray(codes)):
        values, counts = np.unique(row, return_counts=True)
        if len(values) <= 1 or counts.max() > max_share * row.size:
            problems.append(f"codebook {k}: {len(values)} distinct code(s), most common on "
                            f"{counts.max() / row.size:.0%} of frames")
    return problems


def check_not_collapsed(codec: Codec, source: str) -> None:
    """Refuse a codec whose codes collapse (e.g. encodec with pretrained=False: every code 0)."""
    vq = codec.model.quantizer.vq.layers[: codec.n_codebooks]
    uninit = [k for k, layer in enumerate(vq) if not bool(layer._codebook.inited.item())]
    if uninit:
        raise CodecCollapseError(f"{source}: codebooks {uninit} were never initialised (untrained "
                                 f"codec, every code would be 0); fit one with `mmtok codec fit`")
    probe = probe_waveform(codec.sample_rate)
    codes = codec.encode(probe, codec.sample_rate).codes
    problems = collapse_problems(codes)
    # Codes that flip under a 0.1% gain change quantize float noise, not the audio (e.g. an
    # untrained encoder whose output is a near-constant vector).
    nudged = codec.encode(probe * 1.001, codec.sample_rate).codes
    agree = float((codes[0] == nudged[0]).mean())
    if agree < MIN_STABLE_AGREEMENT:
        problems.append(f"codebook 0 changes on {1 - agree:.0%} of frames under a 0.1% gain change "
                        f"(codes quantize noise)")
    if problems:
        raise CodecCollapseError(f"{source}: codec {codec.id} collapses on a music probe ("
                                 + "; ".join(problems) + "); its codes would carry no information")
