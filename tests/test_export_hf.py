"""HF export: the directory loads in `transformers` and computes what mmtok computes."""

import json

import pytest
import torch

from mmtok.export.hf import export_hf
from mmtok.generate.engine import GenerationConfig, generate
from mmtok.model.config import ModelConfig

CAPTIONS = [
    "a slow chorale for church organ in a minor key",
    "solo violin playing a bright melody in four four time",
    "nylon guitar arpeggios with a gentle tempo",
    "a trumpet fanfare in a major key, fast and loud",
    "flute and piano duet, calm and flowing",
    "a four part harmony sung by a choir, andante",
] * 8


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A real MultimodalTokenizer directory: SentencePiece trained here, 24 kHz EnCodec layout
    (the codec itself is never loaded: export only copies the directory and reads its layout)."""
    from mmtok.tokenizer.layout import VocabLayout
    from mmtok.tokenizer.multimodal import MultimodalTokenizer, TokenizerConfig
    from mmtok.tokenizer.text import TextTokenizer, train_sentencepiece

    d = tmp_path_factory.mktemp("tok")
    (d / "captions.txt").write_text("\n".join(CAPTIONS))
    spm = train_sentencepiece([d / "captions.txt"], d / "spm.model", vocab_size=400)
    text = TextTokenizer(spm)
    layout = VocabLayout(text_size=text.size, n_codebooks=2, codebook_size=1024)
    config = TokenizerConfig(codec="encodec_24khz", bandwidth=1.5, n_codebooks=2, sample_rate=24000,
                             frame_rate=75.0, hop=320)
    MultimodalTokenizer(text, layout, config).save_pretrained(d / "tokenizer")
    return MultimodalTokenizer.from_pretrained(d / "tokenizer")


def _model(tokenizer, **overrides):
    fields = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128, init_std=0.2)
    cfg = ModelConfig(**{**fields, **overrides}).for_vocab(len(tokenizer))
    torch.manual_seed(0)
    return cfg.build().eval()


@pytest.mark.parametrize("tied", [False, True])
def test_exported_model_matches_logits_and_greedy_ids(tmp_path, tokenizer, tied):
    from transformers import LlamaForCausalLM

    model = _model(tokenizer, tie_embeddings=tied)
    out = export_hf(model, model.config, tmp_path / "hf", tokenizer=tokenizer)
    hf = LlamaForCausalLM.from_pretrained(out).eval()

    prompts = [[tokenizer.layout.bos_id, *tokenizer.text.encode(c)] for c in CAPTIONS[:3]]
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            torch.testing.assert_close(hf(ids).logits, model(ids))
    ours = generate(model, prompts, GenerationConfig(max_new_tokens=16, greedy=True))
    for prompt, row in zip(prompts, ours):
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
        assert theirs[0, len(prompt):].tolist() == row


def test_guided_greedy_ids_match_transformers_guidance_scale(tmp_path, tokenizer):
    """Classifier-free guidance: HF's `guidance_scale` + `negative_prompt_ids` is the oracle."""
    from transformers import LlamaForCausalLM

    model = _model(tokenizer)
    hf = LlamaForCausalLM.from_pretrained(export_hf(model, model.config, tmp_path / "hf", tokenizer=tokenizer)).eval()
    bos = tokenizer.layout.bos_id
    prompts = [[bos, *tokenizer.text.encode(c)] for c in CAPTIONS[:3]]
    uncond = [bos, *tokenizer.text.encode("music")]
    cfg = GenerationConfig(max_new_tokens=12, greedy=True, cfg_coef=2.0)
    ours = generate(model, prompts, cfg, uncond_prompts=[uncond] * len(prompts))
    plain = generate(model, prompts, GenerationConfig(max_new_tokens=12, greedy=True))
    assert ours != plain
    for prompt, row in zip(prompts, ours):
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=0, guidance_scale=2.0, negative_prompt_ids=torch.tensor([uncond]))
        assert theirs[0, len(prompt):].tolist() == row


def test_export_directory_contents(tmp_path, tokenizer):
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    model = _model(tokenizer)
    out = export_hf(model, model.config, tmp_path / "hf", tokenizer=tokenizer, dtype=torch.bfloat16)
    config = json.loads((out / "config.json").read_text())
    layout = tokenizer.layout
    assert (config["architectures"], config["eos_token_id"], config["bos_token_id"]) == \
        (["LlamaForCausalLM"], layout.eos_id, layout.bos_id)
    assert config["vocab_size"] == len(tokenizer) and config["dtype"] == "bfloat16"
    assert MultimodalTokenizer.from_pretrained(out / "tokenizer").layout.hash == layout.hash
    meta = json.loads((out / "mmtok.json").read_text())
    assert ModelConfig.from_dict(meta["model_config"]) == model.config and meta["layout_hash"] == layout.hash
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_export_refuses_to_clobber_and_overwrites_on_request(tmp_path, tokenizer):
    model = _model(tokenizer)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("earlier work")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_hf(model, model.config, tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "earlier work"
    export_hf(model, model.config, tmp_path / "hf", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "mmtok.json", "model.safetensors"]


def test_export_refuses_a_model_too_small_for_the_tokenizer(tmp_path, tokenizer):
    model = ModelConfig(vocab_size=len(tokenizer) - 64, dim=32, n_layers=1, n_heads=2).build()
    with pytest.raises(ValueError, match="smaller than the tokenizer's"):
        export_hf(model, model.config, tmp_path / "hf", tokenizer=tokenizer)
    assert not (tmp_path / "hf").exists()


def test_cli_exports_a_training_checkpoint(tmp_path, tokenizer, capsys):
    """`mmtok export-hf` on a checkpoint written by the training code's own save_checkpoint."""
    from transformers import LlamaForCausalLM

    from mmtok.checkpoint import save_checkpoint
    from mmtok.cli import main
    from mmtok.config import RunConfig

    model = _model(tokenizer)
    tok_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tok_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    run_config = RunConfig(model=model.config, tokenizer=str(tok_dir))
    save_checkpoint(tmp_path / "run", 3, model, opt, sched, {"layout_hash": tokenizer.layout.hash},
                    run_config.to_yaml(), tok_dir, keep_last_k=1, consolidate=True)

    assert main(["export-hf", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert "exported" in capsys.readouterr().out
    ids = torch.tensor([[tokenizer.layout.bos_id, *tokenizer.text.encode(CAPTIONS[0])]])
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids))

    # A second export to the same place is refused with a clean CLI error (exit code 2).
    assert main(["export-hf", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export-hf", "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
