"""Every codec setting against encodec itself: encodec_24khz at 1.5 / 3 / 6 / 12 / 24 kbps (2 / 4 /
8 / 16 / 32 codebooks) and encodec_48khz at 3 / 6 / 12 / 24 kbps (2 / 4 / 8 / 16 codebooks, with
per-segment scales), each in every serialization (frame_major, coarse_first, delay) and with the
first k codebooks kept. The oracle is the `encodec` package on the same checkpoint file (stand-in
weights of the real architectures, every codebook k-means-initialised: tests/fixtures/tokenizer.py):
the tokenizer's codes are encodec's, ids -> codes is exact, and ids -> waveform is encodec's decode."""

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from mmtok import MultimodalTokenizer
from mmtok.data.templates import crop_codes, fit_audio, frames_that_fit
from mmtok.tokenizer.codes import SCALE_BYTES, segment_frame_counts
from mmtok.tokenizer.layout import VocabLayout
from mmtok.tokenizer.patterns import PATTERNS, codebook_order
from tests.test_tokenizer_codec import _assert_equal_but_for_near_ties, _oracle

SETTINGS = [  # (codec, kbps, codebooks)
    ("encodec_24khz", 1.5, 2), ("encodec_24khz", 3.0, 4), ("encodec_24khz", 6.0, 8), ("encodec_24khz", 12.0, 16),
    ("encodec_24khz", 24.0, 32),
    ("encodec_48khz", 3.0, 2), ("encodec_48khz", 6.0, 4), ("encodec_48khz", 12.0, 8), ("encodec_48khz", 24.0, 16),
]


@pytest.fixture(scope="module")
def excerpt(real_audio_files):
    """2.2 s of a real organ chorale (24 kHz mono): three 48 kHz segments, the last one short."""
    wav, sr = sf.read(real_audio_files[2], dtype="float32")
    return wav[: round(2.2 * sr)], sr


def variant(tok: MultimodalTokenizer, serialization: str, n_codebooks: int | None = None) -> MultimodalTokenizer:
    """The same tokenizer with another serialization / fewer codebooks (the layout `build` makes
    for them), sharing the loaded codec."""
    k = n_codebooks or tok.config.n_codebooks
    layout = VocabLayout(text_size=tok.layout.text_size, n_codebooks=k, codebook_size=tok.layout.codebook_size,
                         n_scale_tokens=tok.layout.n_scale_tokens)
    out = MultimodalTokenizer(tok.text, layout, replace(tok.config, serialization=serialization, n_codebooks=k),
                              repository=tok.repository)
    out._codec = tok.codec
    return out


@pytest.mark.parametrize("codec,kbps,k", SETTINGS, ids=[f"{c[8:]}-{b:g}kbps" for c, b, _ in SETTINGS])
def test_tokenizer_round_trip_equals_encodec(codec, kbps, k, encodec_repository, caption_file, excerpt, tmp_path):
    wav, sr = excerpt
    wav = wav[: round(1.5 * sr)]  # 48 kHz: two segments, the second one short
    tok = MultimodalTokenizer.build([caption_file], codec=codec, bandwidth=kbps, out=tmp_path / "tok", vocab_size=400,
                                    repository=encodec_repository)
    assert tok.config.n_codebooks == tok.layout.n_codebooks == k
    model = _oracle(codec, encodec_repository, kbps)
    codes = tok.encode_audio(wav, sr, normalize=False)  # the codec's own codes, no loudness rule
    x = torch.from_numpy(wav)[None]
    if codec == "encodec_48khz":
        x = AF.resample(x, sr, 48000).repeat(2, 1)  # documented rule: resample, mono -> both channels
    with torch.no_grad():
        frames = model.encode(x[None])  # encodec: whole file (24 kHz), one segment at a time (48 kHz)
    if codec == "encodec_24khz":
        np.testing.assert_array_equal(codes.codes, frames[0][0][0].numpy())
        ref_frames = [(torch.from_numpy(codes.codes)[None], None)]
    else:
        assert [c.shape[-1] for c, _ in frames] == [150, 77]
        np.testing.assert_array_equal(codes.scales, torch.cat([s.view(1) for _, s in frames]).numpy())
        _assert_equal_but_for_near_ties(model, x[None], frames, codes.codes)
        sizes = [c.shape[-1] for c, _ in frames]
        ref_frames = [(c[None], s) for c, (_, s) in zip(torch.from_numpy(codes.codes).split(sizes, dim=1), frames)]
    with torch.no_grad():
        ref_wav = model.decode(ref_frames)[0].numpy()  # encodec's decode of these codes (and scales)
    n_segments = 0 if codes.scales is None else len(codes.scales)
    for pattern in PATTERNS:
        t = variant(tok, pattern)
        ids = t.codes_to_ids(codes)
        assert len(ids) == 2 + SCALE_BYTES * n_segments + codes.codes.size
        body = np.asarray(ids[1:-1] if n_segments == 0 else ids[1 + SCALE_BYTES : 1 + SCALE_BYTES + 150 * k])
        assert t.layout.codebook_of(body).tolist() == codebook_order(k, body.size // k, pattern).tolist()
        back = t.ids_to_codes(ids)
        np.testing.assert_array_equal(back.codes, codes.codes)
        if n_segments:
            np.testing.assert_array_equal(back.scales, codes.scales)  # bit-exact scales
        if pattern == "delay":  # ids -> waveform (ids carry frames, not samples: the longest matching length)
            out, _ = t.decode_audio(ids)
            np.testing.assert_array_equal(out[:, : codes.n_samples], ref_wav[:, : codes.n_samples])
    if k not in (8, 16):
        return
    # The first k codebooks only (n_codebooks): encodec decodes fewer codebooks (coarser audio).
    first = k // 4
    t = variant(tok, "coarse_first", first)
    back = t.ids_to_codes(t.codes_to_ids(codes))
    np.testing.assert_array_equal(back.codes, codes.codes[:first])
    with torch.no_grad():
        ref_first = model.decode([(c[:, :first], s) for c, s in ref_frames])[0].numpy()
    out, _ = t.decode_audio(back)
    np.testing.assert_array_equal(out[:, : codes.n_samples], ref_first[:, : codes.n_samples])


def test_48khz_crops_keep_whole_segments_with_their_scales(encodec_repository, caption_file, excerpt, tmp_path):
    """Training and captioning crops of 48 kHz codes: whole segments from a segment start, each
    with its own scale; a crop is the codes of a valid length (ids round trip, decode works)."""
    wav, sr = excerpt
    tok = MultimodalTokenizer.build([caption_file], codec="encodec_48khz", bandwidth=6.0, out=tmp_path / "tok",
                                    vocab_size=400, repository=encodec_repository, serialization="delay")
    codes = tok.encode_audio(wav, sr)
    counts = segment_frame_counts(codes.n_samples, 150, 320)
    assert counts == [150, 150, 33]
    crop = crop_codes(codes, 150, 400, 320)  # from segment 1 to the end
    np.testing.assert_array_equal(crop.codes, codes.codes[:, 150:])
    np.testing.assert_array_equal(crop.scales, codes.scales[1:])
    prefix = crop_codes(codes, 0, 160, 320)  # a segment and 10 frames of the next
    np.testing.assert_array_equal(prefix.codes, codes.codes[:, np.r_[0:150, 150:160]])
    np.testing.assert_array_equal(prefix.scales, codes.scales[:2])
    one = crop_codes(codes, 0, 150, 320)  # one whole segment of another clip: its 150th frame is the next one's
    assert one.n_frames == 149 and one.scales.tolist() == codes.scales[:1].tolist()
    with pytest.raises(ValueError, match="not a segment boundary"):
        crop_codes(codes, 10, 50, 320)
    rng = np.random.default_rng(0)
    starts = [0, 150, 300]
    for budget in (80, 604, 700, 1300):
        ids = fit_audio(tok, codes, budget, rng)
        back = tok.ids_to_codes(ids)
        assert len(ids) <= budget and 0 < back.n_frames <= frames_that_fit(tok, budget)
        first = codes.scales.tolist().index(back.scales[0])  # the crop's first segment, found by its scale
        np.testing.assert_array_equal(back.scales, codes.scales[first : first + len(back.scales)])
        kept = segment_frame_counts(back.n_samples, 150, 320)
        for i, (a, n) in enumerate(zip(np.cumsum([0, *kept[:-1]]), kept)):  # each segment: a prefix of its frames
            np.testing.assert_array_equal(back.codes[:, a : a + n], codes.codes[:, starts[first + i] : starts[first + i] + n])
        wav_out, _ = tok.decode_audio(ids)
        assert np.isfinite(wav_out).all() and wav_out.shape[0] == 2


def test_every_48khz_length_has_its_segments_back():
    """ids carry frames per segment, not samples: every length's segment frame counts give back
    a length with the same segments (0.99 s of audio, one 149-frame segment, included)."""
    from mmtok.tokenizer.codes import samples_for_segments

    for n in [*range(1, 100_000, 97), 47_520, 47_521, 95_040, 95_041]:
        counts = segment_frame_counts(n, 150, 320)
        longest = samples_for_segments(counts, 150, 320)
        assert longest >= n and segment_frame_counts(longest, 150, 320) == counts
        assert segment_frame_counts(longest + 1, 150, 320) != counts
