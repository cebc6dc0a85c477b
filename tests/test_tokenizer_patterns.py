"""Serializations of [K, T] codes: frame-major (AnyGPT), coarse-first, first-k codebooks; each
is exactly reversible and a stream with a partial or misaligned frame is refused."""

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
    for pattern in ("frame_major", "coarse_first"):
        np.testing.assert_array_equal(unflatten(flatten(ids, pattern), 3, pattern, layout), ids)
    with pytest.raises(ValueError, match="unknown serialization"):
        flatten(ids, "delay")


@pytest.fixture(scope="module", params=[("frame_major", None), ("coarse_first", None), ("frame_major", 2), ("coarse_first", 1)])
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
    else:
        assert kk.tolist() == sum([[c] * codes.n_frames for c in range(codes.n_codebooks)], [])
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
