"""Templates (interleaving, cropping, loss mask) and packing invariants."""

import numpy as np
import pytest
import torch

from mmtok.data.loader import DataConfig
from mmtok.data.packing import Packer, collate_rows
from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards
from mmtok.data.templates import (
    CAPTION_INSTRUCTIONS,
    Document,
    TemplateConfig,
    caption_prompt_ids,
    generate_prompt_ids,  # fmt: skip
    make_document,
)
from mmtok.model.attention import seqlens_of
from mmtok.tokenizer.layout import IGNORE_INDEX, TASK_AUDIO, TASK_CAPTION, TASK_GENERATE, TASK_TEXT, Modality


@pytest.fixture(scope="module")
def samples(data_shards):
    urls = resolve_shards(data_shards / "shards.jsonl#train")
    return list(ShardStream(urls, StreamConfig(shuffle_buffer=0, epochs=1)))


def only(template):
    p = {f"p_{t}": float(t == template) for t in ("caption", "generate", "text", "audio")}
    return TemplateConfig(**p, p_instruction=1.0)


def test_caption_document_layout_and_crop(tokenizer, samples):
    lay = tokenizer.layout
    s = samples[0]
    budget = 120  # far fewer tokens than the clip: the audio must be cropped
    doc = make_document(tokenizer, s.codes, s.text, np.random.default_rng(0), only("caption"), budget)
    ids = doc.ids.tolist()
    assert len(ids) <= budget and ids[:2] == [lay.bos_id, lay.id_of(TASK_CAPTION)] and ids[-1] == lay.eos_id
    soa, eoa = ids.index(lay.soa_id), ids.index(lay.eoa_id)
    instr = tokenizer.decode_text(ids[2:soa])
    assert instr in CAPTION_INSTRUCTIONS
    assert tokenizer.decode_text(ids[eoa + 1 : -1]) == s.text
    # Whole frames, a contiguous window of the real codes (the tokenizer's parser is the oracle).
    crop = tokenizer.ids_to_codes(ids[soa : eoa + 1]).codes
    T = crop.shape[1]
    assert 0 < T < s.codes.n_frames
    starts = [t for t in range(s.codes.n_frames - T + 1) if np.array_equal(s.codes.codes[:, t : t + T], crop)]
    assert starts, "cropped audio is not a frame-aligned window of the clip"
    # Loss only on the caption and <eos>; the prompt is the inference prompt, token for token.
    assert doc.loss.tolist() == [i > eoa for i in range(len(ids))]
    assert ids[: eoa + 1] == caption_prompt_ids(tokenizer, ids[soa : eoa + 1], instr)


def test_crop_augmentation_draws_windows_of_at_least_the_share(tokenizer, samples):
    s = samples[0]

    def audio_codes(doc):  # (K, T) codes between <soa> and <eoa>
        ids, lay = doc.ids.tolist(), tokenizer.layout
        return tokenizer.ids_to_codes(ids[ids.index(lay.soa_id) : ids.index(lay.eoa_id) + 1]).codes

    lengths = set()
    for seed in range(40):
        doc = make_document(tokenizer, s.codes, s.text, np.random.default_rng(seed),
                            TemplateConfig(**vars(only("caption")) | {"min_audio_share": 0.5}), 4096)
        crop = audio_codes(doc)
        T = crop.shape[1]
        assert s.codes.n_frames / 2 <= T <= s.codes.n_frames
        assert any(np.array_equal(s.codes.codes[:, t : t + T], crop) for t in range(s.codes.n_frames - T + 1))
        lengths.add(T)
    assert len(lengths) > 5  # windows of many lengths, not one
    # The default (1.0) keeps the whole clip when it fits.
    whole = make_document(tokenizer, s.codes, s.text, np.random.default_rng(0), only("caption"), 4096)
    assert audio_codes(whole).shape[1] == s.codes.n_frames
    with pytest.raises(ValueError, match=r"min_audio_share must be in \(0, 1\]"):
        TemplateConfig(min_audio_share=1.5)


def test_generate_text_audio_documents(tokenizer, samples):
    lay = tokenizer.layout
    s = samples[1]
    gen = make_document(tokenizer, s.codes, s.text, np.random.default_rng(1), only("generate"), 4000)
    ids = gen.ids.tolist()
    soa = ids.index(lay.soa_id)
    prompt = ids[: soa + 1]
    assert prompt[:2] == [lay.bos_id, lay.id_of(TASK_GENERATE)] and ids[-2:] == [lay.eoa_id, lay.eos_id]
    instr_and_caption = tokenizer.decode_text(prompt[2:-1])
    assert instr_and_caption.endswith(s.text)
    instr = instr_and_caption[: -len(s.text)].strip()
    assert prompt == generate_prompt_ids(tokenizer, s.text, instr)
    np.testing.assert_array_equal(tokenizer.ids_to_codes(ids[soa:-1]).codes, s.codes.codes)  # uncropped
    assert gen.loss.tolist() == [i > soa for i in range(len(ids))]

    text = make_document(tokenizer, s.codes, s.text, np.random.default_rng(2), only("text"), 4000)
    assert text.ids[:2].tolist() == [lay.bos_id, lay.id_of(TASK_TEXT)]
    assert tokenizer.decode_text(text.ids[2:-1]) == s.text and text.loss[2:].all() and not text.loss[:2].any()

    audio = make_document(tokenizer, s.codes, s.text, np.random.default_rng(3), only("audio"), 4000)
    assert audio.ids[:3].tolist() == [lay.bos_id, lay.id_of(TASK_AUDIO), lay.soa_id]
    assert (tokenizer.layout.modality_of(audio.ids[3:-2]) == Modality.AUDIO).all()

    full = make_document(tokenizer, s.codes, s.text, np.random.default_rng(1),
                         TemplateConfig(p_caption=0, p_text=0, p_audio=0, p_instruction=1.0,
                                        loss_on_target_only=False), 4000)  # fmt: skip
    assert full.loss[1:].all() and not full.loss[0]


def test_template_mix_follows_probabilities(tokenizer, samples):
    rng = np.random.default_rng(0)
    cfg = TemplateConfig(p_caption=0.6, p_generate=0.2, p_text=0.0, p_audio=0.2)
    made = [make_document(tokenizer, s.codes, s.text, rng, cfg, 300).template for _ in range(25) for s in samples[:8]]
    share = {t: made.count(t) / len(made) for t in ("caption", "generate", "text", "audio")}
    assert share["text"] == 0 and 0.5 < share["caption"] < 0.7 and 0.1 < share["audio"] < 0.3


def check_row_invariants(batch, layout):
    """The contract the model relies on (see PackedBatch)."""
    B, T = batch.shape
    for b in range(B):
        tok, tgt, pos, doc, mod = (x[b] for x in (batch.tokens, batch.targets, batch.positions,
                                                  batch.doc_ids, batch.modality))  # fmt: skip
        pad = doc < 0
        if pad.any():  # padding only at the end of a row
            assert pad[pad.nonzero()[0, 0] :].all()
        assert (tgt[pad] == IGNORE_INDEX).all() and (mod[pad] == Modality.INVALID).all()
        real = doc[~pad]
        assert (real.diff() >= 0).all() and (real.diff() <= 1).all() and real[0] == 0
        for d in real.unique().tolist():
            idx = (doc == d).nonzero().flatten()
            assert (idx.diff() == 1).all()
            assert torch.equal(pos[idx], torch.arange(len(idx)))  # positions restart per document
            # next-token shift inside the document; the last target is the document's own next id
            inner = idx[:-1]
            keep = tgt[inner] != IGNORE_INDEX
            assert torch.equal(tgt[inner][keep], tok[inner + 1][keep])
        m = torch.from_numpy(layout.modality_of(tgt.clamp(min=0).numpy()))
        assert torch.equal(mod[tgt != IGNORE_INDEX], m[tgt != IGNORE_INDEX])


def test_packed_batches_keep_documents_apart(tokenizer, data_shards):
    from xformers.ops.fmha.attn_bias import BlockDiagonalCausalMask

    cfg = DataConfig(train_shards=str(data_shards / "shards.jsonl#train"), seq_len=256, batch_size=4, seed=0, workers=0,
                     shuffle_buffer=4)  # fmt: skip
    real = total = 0
    for i, batch in enumerate(cfg.build(tokenizer)):
        assert batch.shape == (4, 256) and batch.tokens.dtype == torch.int64 and batch.doc_ids.dtype == torch.int32
        check_row_invariants(batch, tokenizer.layout)
        real += int((batch.doc_ids >= 0).sum())
        total += batch.doc_ids.numel()
        if i == 0:
            # The mask the model builds from the segments (xformers is the oracle) is exactly
            # "same document, causal": no position can attend across documents or rows.
            mask = BlockDiagonalCausalMask.from_seqlens(seqlens_of(batch.doc_ids)).materialize((4 * 256, 4 * 256))
            allowed = torch.isfinite(mask)
            flat_doc = (batch.doc_ids + torch.arange(4)[:, None] * 1000).flatten()
            q, k = torch.meshgrid(torch.arange(4 * 256), torch.arange(4 * 256), indexing="ij")
            assert torch.equal(allowed, (flat_doc[q] == flat_doc[k]) & (k <= q))
        if i == 14:
            break
    assert real / total >= 0.99, real / total


def test_long_documents_are_split_in_order(tokenizer):
    lay = tokenizer.layout
    ids = np.arange(1000, dtype=np.int64) % 300  # a text document longer than two rows
    docs = [Document(ids, np.ones(1000, bool), "text"), Document(ids[:50], np.ones(50, bool), "text")]
    packer = Packer(lay, seq_len=400, pool_size=2, min_split=8)
    for d in docs:
        packer.add(d)
    rows = []
    while len(packer):
        rows.append(packer.pop_row())
    batch = collate_rows(rows)
    check_row_invariants(batch, lay)
    # Every (input, target) pair of both documents appears exactly once, in order within each.
    pairs = [(int(a), int(b)) for a, b, d in zip(batch.tokens.flatten(), batch.targets.flatten(),
                                                 batch.doc_ids.flatten()) if d >= 0]  # fmt: skip
    want = list(zip(ids[:-1].tolist(), ids[1:].tolist())) + list(zip(ids[:49].tolist(), ids[1:50].tolist()))
    assert sorted(pairs) == sorted(want) and len(pairs) == len(want)
    assert (batch.doc_ids[:-1] >= 0).all()  # only the final flush row may hold padding
