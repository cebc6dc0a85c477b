"""The Transformer against HuggingFace's LlamaForCausalLM (the oracle), and its own contracts."""

import pytest
import torch

from mmtok.export.hf import hf_state_dict, llama_config
from mmtok.model.transformer import default_positions


def _hf_twin(model):
    """LlamaForCausalLM with our weights (in memory; test_export_hf covers the files)."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(llama_config(model.config)).eval()
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied: lm_head is the embedding
    return hf


@pytest.mark.parametrize("overrides", [dict(), dict(n_kv_heads=1, tie_embeddings=True), dict(n_kv_heads=4)])
def test_logits_equal_hf_llama(make_tiny_model, overrides):
    model = make_tiny_model(**overrides)
    hf = _hf_twin(model)
    tokens = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits)


def test_packed_documents_equal_hf_on_each_document_alone(make_tiny_model):
    """A packed row (positions restart per document, attention kept inside it) gives every
    document the logits HF computes for that document on its own."""
    model = make_tiny_model()
    hf = _hf_twin(model)
    g = torch.Generator().manual_seed(3)
    docs = [torch.randint(0, 200, (n,), generator=g) for n in (11, 6, 15)]
    tokens = torch.cat(docs)[None]  # (1, 32)
    doc_ids = torch.cat([torch.full((len(d),), i, dtype=torch.int32) for i, d in enumerate(docs)])[None]
    with torch.no_grad():
        packed = model(tokens, doc_ids=doc_ids)[0]
        alone = torch.cat([hf(d[None]).logits[0] for d in docs])
    torch.testing.assert_close(packed, alone)


def test_default_positions_restart_at_each_segment():
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, -1], [5, 5, 5, 5, 5, 5]], dtype=torch.int32)
    expected = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert torch.equal(default_positions(doc_ids, 2, 6, "cpu"), expected)
    assert torch.equal(default_positions(None, 2, 6, "cpu"), torch.arange(6).expand(2, 6))


def test_positions_past_max_seq_len_raise(make_tiny_model):
    model = make_tiny_model(max_seq_len=16)
    with pytest.raises(ValueError, match="position 16 >= max_seq_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_depth_scaled_init_and_tied_weights(make_tiny_model):
    model = make_tiny_model(n_layers=8, dim=256, init_std=0.02, tie_embeddings=True)
    wq = model.layers[0].attention.wq.weight.std().item()
    wo = model.layers[0].attention.wo.weight.std().item()
    w2 = model.layers[0].feed_forward.w2.weight.std().item()
    assert wq == pytest.approx(0.02, rel=0.05)
    assert wo == pytest.approx(0.02 / 4, rel=0.05) and w2 == pytest.approx(0.02 / 4, rel=0.05)  # sqrt(2*8)=4
    assert model.output.weight is model.tok_embeddings.weight


def test_training_step_reduces_loss_on_a_repeated_batch(make_tiny_model):
    """Gradients flow through every backend path used in training (packed rows, sdpa)."""
    model = make_tiny_model(init_std=0.02).train()
    tokens = torch.randint(0, 200, (2, 33), generator=torch.Generator().manual_seed(4))
    doc_ids = torch.tensor([[0] * 20 + [1] * 12, [0] * 32], dtype=torch.int32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        logits = model(tokens[:, :-1], doc_ids=doc_ids)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[-1] < losses[0] - 0.5


def test_dropout_acts_in_training_only(make_tiny_model):
    """Eval mode is the HF Llama computation whatever the dropout; train mode draws new masks."""
    model = make_tiny_model(dropout=0.3)
    hf = _hf_twin(model)
    tokens = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits)
        model.train()
        first, second = model(tokens), model(tokens)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, hf(tokens).logits)


def test_activation_checkpointing_replays_the_dropout_masks(make_tiny_model):
    """The recomputed forward must draw the same masks as the first one, or gradients are wrong."""
    from mmtok.training.parallelize import DistInfo, parallelize

    tokens = torch.randint(0, 200, (2, 33), generator=torch.Generator().manual_seed(6))
    grads = []
    for checkpointing in (False, True):
        model = make_tiny_model(dropout=0.3).train()
        wrapped = parallelize(model, DistInfo(0, 0, 1, torch.device("cpu")), "ddp", None,
                              activation_checkpointing=checkpointing)
        torch.manual_seed(7)
        logits = wrapped(tokens[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
        grads.append([p.grad for p in model.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain)
