"""Serializations of [K, T] codes: frame-major (AnyGPT), coarse-first, MusicGen's delay pattern,
first-k codebooks; each is exactly reversible and a stream with a partial or misaligned frame is
refused."""

import numpy as np
import pytest

from mmtok import MultimodalTokenizer
from mmtok.tokenizer.layout import VocabLayout
from mmtok.tokenizer.patterns import PartialFrameError, flatten, unflatten


def test_orders_on_a_small_example():
    layout = VocabLayout(text_size=10, n_codebooks=3, codebook_size=4)
    codes = np.array([[0, 1], [2, 3], [1, 0]])  # (K=3, T=2)
    ids = layout.audio_ids(codes)
    b, s = layout.audio_base, layout.codebook_size
    assert flatten(ids, "frame_major").tolist() == [b + 0, b + s + 2, b + 2 * s + 1, b + 1, b + s + 3, b + 2 * s + 0]
    assert flatten(ids, "coarse_first").tolist() == [b + 0, b + 1, b + s + 2, b + s + 3, b + 2 * s + 1, b + 2 * s + 0]
    # delay: step s holds codebook k of frame s - k (MusicGen), the empty positions left out:
    # step 0: k0 t0 | step 1: k0 t1, k1 t0 | step 2: k1 t1, k2 t0 | step 3: k2 t1
    assert flatten(ids, "delay").tolist() == [b + 0, b + 1, b + s + 2, b + s + 3, b + 2 * s + 1, b + 2 * s + 0]
    for pattern in ("frame_major", "coarse_first", "delay"):
        np.testing.assert_array_equal(unflatten(flatten(ids, pattern), 3, pattern, layout), ids)
    with pytest.raises(ValueError, match="unknown serialization"):
        flatten(ids, "interleaved")


def test_delay_pattern_is_musicgen_s_and_exactly_reversible():
    """The delay stream is MusicGen's (K, T+K-1) delayed grid read step by step with its empty
    cells dropped, and flatten/unflatten are inverses for any K and T (including T < K)."""
    rng = np.random.default_rng(0)
    for k, t in [(1, 5), (2, 1), (4, 3), (8, 50), (32, 7)]:
        layout = VocabLayout(text_size=10, n_codebooks=k, codebook_size=16)
        ids = layout.audio_ids(rng.integers(0, 16, (k, t)))
        grid = np.full((k, t + k - 1), -1)  # MusicGen: codebook k shifted right by k steps, -1 = empty
        for q in range(k):
            grid[q, q : q + t] = ids[q]
        expected = [int(v) for v in grid.T.reshape(-1) if v >= 0]  # step by step, codebooks in order
        stream = flatten(ids, "delay")
        assert stream.tolist() == expected
        np.testing.assert_array_equal(unflatten(stream, k, "delay", layout), ids)
        if k > 1:
            with pytest.raises(PartialFrameError, match="codebook"):
                unflatten(stream[::-1], k, "delay", layout)


@pytest.fixture(scope="module", params=[("frame_major", None), ("coarse_first", None), ("delay", None), ("frame_major", 2),
                                        ("coarse_first", 1), ("delay", 3)])
def variant(request, fitted_codec_dir, caption_file, tmp_path_factory):
    pattern, k = request.param
    out = tmp_path_factory.mktemp("tok_pattern") / "tok"
    tok = MultimodalTokenizer.build([caption_file], codec=str(fitted_codec_dir), out=out, vocab_size=400,
                                    serialization=pattern, n_codebooks=k)
    return tok, pattern, k


def test_every_serialization_roundtrips(variant, real_audio_files):
    tok, pattern, k = variant
    codes = tok.encode_audio(real_audio_files[5])
    assert codes.n_codebooks == (k or 4) == tok.layout.n_codebooks
    ids = tok.codes_to_ids(codes)
    body = np.asarray(ids[1:-1])
    kk = tok.layout.codebook_of(body)
    if pattern == "frame_major":
        assert kk.tolist() == list(range(codes.n_codebooks)) * codes.n_frames
    elif pattern == "coarse_first":
        assert kk.tolist() == sum([[c] * codes.n_frames for c in range(codes.n_codebooks)], [])
    else:  # delay: step s holds codebooks max(0, s-T+1) .. min(K-1, s)
        t = codes.n_frames
        assert kk.tolist() == [q for s in range(t + codes.n_codebooks - 1) for q in range(codes.n_codebooks) if 0 <= s - q < t]
    back = tok.ids_to_codes(ids)
    np.testing.assert_array_equal(back.codes, codes.codes)
    wav, sr = tok.decode_audio(ids)  # fewer codebooks still decode (coarser audio)
    assert wav.shape[1] == codes.n_frames * tok.config.hop and np.isfinite(wav).all()


def test_partial_and_misaligned_frames_are_refused(tokenizer, real_audio_files):
    ids = tokenizer.codes_to_ids(tokenizer.encode_audio(real_audio_files[0]))
    with pytest.raises(PartialFrameError, match="partial frame"):
        tokenizer.ids_to_codes(ids[:-2] + ids[-1:])  # last frame missing a codebook
    swapped = list(ids)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(PartialFrameError, match="codebook"):
        tokenizer.ids_to_codes(swapped)
    with pytest.raises(PartialFrameError, match="<eoa>"):
        tokenizer.ids_to_codes(ids[:-1])
