"""Generation engine: KV cache vs recomputation, batching, sampling options, constraints."""

import pytest
import torch

from mmtok.generate.constraints import AudioConstraint, TextConstraint
from mmtok.generate.engine import GenerationConfig, generate, left_pad
from mmtok.generate.sampling import apply_repetition_penalty, top_k_filter, top_p_filter
from mmtok.model.config import ModelConfig
from mmtok.model.kv_cache import KVCache
from mmtok.tokenizer.layout import Modality, VocabLayout
from mmtok.tokenizer.patterns import unflatten

PROMPTS = [[1, 5, 9, 13, 17, 21, 25], [30, 31], [40, 41, 42, 43, 44]]
GREEDY = GenerationConfig(max_new_tokens=24, greedy=True)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_cached_decoding_equals_full_recomputation_ids_and_logits(make_tiny_model, backend):
    model = make_tiny_model(attention=backend)
    cached = generate(model, PROMPTS, GREEDY)
    full = generate(model, PROMPTS, GenerationConfig(max_new_tokens=24, greedy=True, use_cache=False))
    assert cached == full
    assert len({tuple(r) for r in cached}) == 3  # the rows really differ

    # Logits: prefill + one-token steps through the cache vs one forward over the whole sequence.
    seq = torch.tensor([PROMPTS[0] + cached[0]])  # (1, 31)
    cache = KVCache.for_model(model.config, batch=1, max_len=seq.shape[1])
    with torch.no_grad():
        steps = [model(seq[:, :7], torch.arange(7)[None], kv_cache=cache)]
        for t in range(7, seq.shape[1]):
            steps.append(model(seq[:, t:t + 1], torch.tensor([[t]]), kv_cache=cache))
        torch.testing.assert_close(torch.cat(steps, dim=1), model(seq))


def test_left_padded_batch_equals_one_prompt_at_a_time(make_tiny_model):
    model = make_tiny_model()
    batched = generate(model, PROMPTS, GREEDY)
    alone = [generate(model, [p], GREEDY)[0] for p in PROMPTS]
    assert batched == alone

    # Logits too: the padded row's prefill equals the short prompt's own.
    tokens, doc_ids, positions = left_pad(PROMPTS, pad_id=0)
    with torch.no_grad():
        padded = model(tokens, positions, doc_ids, kv_cache=KVCache.for_model(model.config, 3, 7))
        own = model(torch.tensor([PROMPTS[1]]))
    torch.testing.assert_close(padded[1, -2:], own[0])


def test_seeded_sampling_is_reproducible_and_seed_dependent(make_tiny_model):
    model = make_tiny_model(init_std=0.05)  # flatter distribution: sampling has choices
    cfg = dict(max_new_tokens=20, temperature=0.9, top_k=100, top_p=0.95, repetition_penalty=1.2)
    a = generate(model, PROMPTS, GenerationConfig(seed=7, **cfg))
    assert a == generate(model, PROMPTS, GenerationConfig(seed=7, **cfg))
    assert a != generate(model, PROMPTS, GenerationConfig(seed=8, **cfg))
    # top_k=1 leaves one candidate: sampling becomes argmax.
    assert generate(model, PROMPTS, GenerationConfig(max_new_tokens=20, top_k=1, seed=3)) == \
        generate(model, PROMPTS, GenerationConfig(max_new_tokens=20, greedy=True))


def test_logit_processors_match_transformers():
    from transformers import RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 300, generator=g) * 3
    history = torch.randint(0, 300, (4, 12), generator=g)
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter_(1, history, True)
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 1.3),
                               RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone()))
    assert torch.equal(top_k_filter(logits, 17), TopKLogitsWarper(17)(history, logits.clone()))
    assert torch.equal(top_p_filter(logits, 0.8).isinf(), TopPLogitsWarper(0.8)(history, logits.clone()).isinf())


UNCOND = [[2, 3], [4], [2, 3, 6, 7]]


def test_guidance_mixes_the_twins_and_keeps_batching_and_caching_exact(make_tiny_model):
    model = make_tiny_model(init_std=0.05)
    plain = generate(model, PROMPTS, GREEDY)
    guided = GenerationConfig(max_new_tokens=24, greedy=True, cfg_coef=2.5)
    out = generate(model, PROMPTS, guided, uncond_prompts=UNCOND)
    assert out != plain  # guidance changes what is chosen
    # cfg_coef = 1 is no guidance (the twins are never run); cfg_coef = 0 is the twin alone, continuing
    # the very same output: each row writes what its unconditional prompt writes by itself.
    one = GenerationConfig(max_new_tokens=24, greedy=True, cfg_coef=1.0)
    assert generate(model, PROMPTS, one, uncond_prompts=UNCOND) == plain
    zero = GenerationConfig(max_new_tokens=24, greedy=True, cfg_coef=0.0)
    assert generate(model, PROMPTS, zero, uncond_prompts=UNCOND) == generate(model, UNCOND, GREEDY)
    # The 2B rows are left-padded together: guided rows equal each prompt guided alone, and the
    # cache equals full recomputation.
    assert out == [generate(model, [p], guided, uncond_prompts=[u])[0] for p, u in zip(PROMPTS, UNCOND)]
    full = GenerationConfig(max_new_tokens=24, greedy=True, cfg_coef=2.5, use_cache=False)
    assert generate(model, PROMPTS, full, uncond_prompts=UNCOND) == out


def test_guidance_step_is_the_log_probability_mix(make_tiny_model):
    model = make_tiny_model(init_std=0.05)
    cond, uncond = PROMPTS[0], UNCOND[0]
    first = generate(model, [cond], GenerationConfig(max_new_tokens=1, greedy=True, cfg_coef=3.0),
                     uncond_prompts=[uncond])[0][0]
    with torch.no_grad():
        lc = model(torch.tensor([cond]))[0, -1].log_softmax(-1)
        lu = model(torch.tensor([uncond]))[0, -1].log_softmax(-1)
    mix = lu + 3.0 * (lc - lu)
    assert first == int(mix.argmax())
    assert int(mix.argmax()) != int(lc.argmax())  # the test can tell guidance from none


def test_stop_ids_end_each_row_and_are_kept(make_tiny_model):
    model = make_tiny_model()
    free = generate(model, PROMPTS, GREEDY)
    stop = free[0][5]
    stopped = generate(model, PROMPTS, GenerationConfig(max_new_tokens=24, greedy=True, stop_ids=(stop,)))
    for row_free, row in zip(free, stopped):
        end = row_free.index(stop) + 1 if stop in row_free else len(row_free)
        assert row == row_free[:end]
    assert stopped[0][-1] == stop and len(stopped[0]) <= 6


def test_text_constraint_emits_only_text_then_eos(make_tiny_model, tiny_layout):
    model = make_tiny_model()
    out = generate(model, PROMPTS, GenerationConfig(max_new_tokens=40, temperature=1.5, seed=0),
                   constraint=TextConstraint(tiny_layout))
    for row in out:
        body = row[:-1] if row[-1] == tiny_layout.eos_id else row
        assert len(body) >= 1
        assert (tiny_layout.modality_of(body) == Modality.TEXT).all()


@pytest.mark.parametrize("n_frames", [None, 5])
def test_audio_constraint_writes_whole_frames_in_codebook_order(make_tiny_model, tiny_layout, n_frames):
    model = make_tiny_model()
    k = 3  # fewer codebooks than the layout holds, as with a low bandwidth
    constraint = AudioConstraint(tiny_layout, n_codebooks=k, n_frames=n_frames)
    prompt = [[tiny_layout.bos_id, 7, 8, tiny_layout.soa_id], [tiny_layout.soa_id]]
    out = generate(model, prompt, GenerationConfig(max_new_tokens=61, temperature=2.0, seed=1),
                   constraint=constraint)
    for row in out:
        ended = row[-1] == tiny_layout.eoa_id
        audio = row[:-1] if ended else row
        if ended or n_frames is not None:
            ids = unflatten(audio, k, "frame_major", tiny_layout)  # the tokenizer's own parser
            assert ids.shape[0] == k
        if n_frames is not None:
            assert ended and len(audio) == n_frames * k == constraint.max_new_tokens - 1
        assert tiny_layout.eoa_id not in audio


def test_coarse_first_audio_constraint(tiny_layout):
    c = AudioConstraint(tiny_layout, n_codebooks=2, n_frames=3, pattern="coarse_first")
    blocks = [int(c.allowed(s, None).nonzero()[0]) for s in range(7)]
    expected_codebook = [0, 0, 0, 1, 1, 1]
    assert list(tiny_layout.codebook_of(blocks[:6])) == expected_codebook
    assert blocks[6] == tiny_layout.eoa_id


def test_delay_audio_constraint(tiny_layout):
    c = AudioConstraint(tiny_layout, n_codebooks=3, n_frames=2, pattern="delay")
    blocks = [int(c.allowed(s, None).nonzero()[0]) for s in range(7)]
    assert list(tiny_layout.codebook_of(blocks[:6])) == [0, 0, 1, 1, 2, 2]  # steps: k0 | k0 k1 | k1 k2 | k2
    assert blocks[6] == tiny_layout.eoa_id and c.max_new_tokens == 7


def test_scale_audio_constraint_writes_each_segment_s_scale_then_its_frames():
    """48 kHz layouts: per segment 4 scale bytes (the last one kept to SCALE_TOP_BYTE_RANGE: a
    positive float32 in [2**-27, 2)), then the segment's frames; `<eoa>` after the last one."""
    import struct

    from mmtok.tokenizer.codes import SCALE_TOP_BYTE_RANGE

    layout = VocabLayout(text_size=100, n_codebooks=2, codebook_size=64, n_scale_tokens=256)
    c = AudioConstraint(layout, n_codebooks=2, pattern="coarse_first", segment_frames=[3, 1])
    assert c.max_new_tokens == 4 + 3 * 2 + 4 + 1 * 2 + 1
    torch.manual_seed(0)
    model = ModelConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=64, attention="sdpa").for_vocab(len(layout)).build()
    (row,) = generate(model, [[layout.soa_id]], GenerationConfig(max_new_tokens=c.max_new_tokens, temperature=3.0,
                                                                 seed=0), constraint=c)
    assert len(row) == c.max_new_tokens and row[-1] == layout.eoa_id
    heads = [row[0:4], row[10:14]]
    for head in heads:
        raw = bytes(i - layout.scale_base for i in head)
        assert all(layout.scale_base <= i < layout.audio_base for i in head)
        assert SCALE_TOP_BYTE_RANGE[0] <= raw[3] < SCALE_TOP_BYTE_RANGE[1]
        assert 2.0 ** -27 <= struct.unpack("<f", raw)[0] < 2.0
    assert list(layout.codebook_of(row[4:10])) == [0, 0, 0, 1, 1, 1] and list(layout.codebook_of(row[14:16])) == [0, 1]


def test_constraint_errors(tiny_layout):
    with pytest.raises(ValueError, match="needs segment_frames"):
        AudioConstraint(VocabLayout(text_size=100, n_codebooks=2, codebook_size=1024, n_scale_tokens=256))
    with pytest.raises(ValueError, match="segment_frames is for layouts with scale-byte tokens"):
        AudioConstraint(tiny_layout, n_frames=3, segment_frames=[3])
    with pytest.raises(ValueError, match="delay audio needs a fixed n_frames"):
        AudioConstraint(tiny_layout, pattern="delay")
    with pytest.raises(ValueError, match="coarse_first audio needs a fixed n_frames"):
        AudioConstraint(tiny_layout, pattern="coarse_first")
    with pytest.raises(ValueError, match="n_codebooks=9"):
        AudioConstraint(tiny_layout, n_codebooks=9)


def test_bad_requests_raise_clear_errors(make_tiny_model):
    model = make_tiny_model(max_seq_len=32)
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len 32"):
        generate(model, [[1] * 20], GenerationConfig(max_new_tokens=13))
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        generate(model, [[1], []])
    with pytest.raises(ValueError, match="prompt ids must be in"):
        generate(model, [[10 ** 6]], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(model, [[1]], GenerationConfig(temperature=0))
    with pytest.raises(ValueError, match="cfg_coef=2.0 needs one unconditional prompt per prompt: got 0 for 1"):
        generate(model, [[1]], GenerationConfig(max_new_tokens=4, cfg_coef=2.0))
    with pytest.raises(ValueError, match="got 1 for 2 prompts"):
        generate(model, [[1], [2]], GenerationConfig(max_new_tokens=4, cfg_coef=2.0), uncond_prompts=[[1]])
    with pytest.raises(ValueError, match="cfg_coef must be finite and >= 0"):
        generate(model, [[1]], GenerationConfig(cfg_coef=-1.0), uncond_prompts=[[1]])
