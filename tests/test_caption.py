"""Captioner on an in-memory model: training prompt, text-only output, batching, any input format."""

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.data.templates import caption_prompt_ids, text_prompt_ids
from mmtok.generate.captioner import CaptionConfig, Captioner
from mmtok.generate.engine import generate
from mmtok.generate.sampling import GenerationConfig
from mmtok.tokenizer.layout import LayoutMismatchError, Modality


@pytest.fixture(scope="module")
def model(tokenizer):
    """An untrained model sized for the test tokenizer. A large init_std makes its next-token
    distribution peaked, so greedy ids are decided by wide margins (robust comparisons)."""
    from mmtok.model.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, max_seq_len=256, attention="sdpa", init_std=0.2)
    return cfg.for_vocab(len(tokenizer)).build().eval()


def captioner(model, tokenizer, **kw) -> Captioner:
    gen = GenerationConfig(max_new_tokens=kw.pop("max_new_tokens", 24), greedy=True, cfg_coef=kw.pop("cfg_coef", 1.0))
    return Captioner(model, tokenizer, CaptionConfig(generation=gen, **kw))


def test_caption_is_text_only_although_the_model_prefers_audio(model, tokenizer, real_audio_files):
    cap = captioner(model, tokenizer, seconds=1.0)
    codes = cap.encode(real_audio_files[0])
    prompt = cap.prompt_ids(codes)
    # Oracle for the prompt: the training template builder on the tokenizer's own ids.
    assert prompt == caption_prompt_ids(tokenizer, tokenizer.codes_to_ids(codes))
    # Unconstrained, this untrained model writes audio ids (most of the vocabulary is audio)...
    free = generate(model, [prompt], GenerationConfig(max_new_tokens=24, greedy=True))[0]
    assert (tokenizer.layout.modality_of(free) == Modality.AUDIO).any()
    # ...the captioner never does: text ids, then at most a closing <eos>.
    (ids,) = cap.generate_ids([codes])
    body = ids[:-1] if ids[-1] == tokenizer.layout.eos_id else ids
    assert len(body) >= 1 and (tokenizer.layout.modality_of(body) == Modality.TEXT).all()
    assert isinstance(cap(real_audio_files[0]), str)


def test_batch_equals_one_at_a_time_and_reads_any_rate_and_channels(model, tokenizer, real_audio_files, tmp_path):
    cap = captioner(model, tokenizer, seconds=1.5, batch_size=4)
    files = real_audio_files[:5]  # 5 with batch_size 4: a full and a partial batch
    batched = cap.caption_batch(files)
    assert batched == [cap(f) for f in files]
    assert len(set(batched)) > 1  # different music, different (untrained) captions

    # The same music as a 44.1 kHz stereo float waveform and as a float wav file at that rate.
    import torchaudio.functional as AF

    wav, sr = sf.read(real_audio_files[0], dtype="float32")
    stereo = AF.resample(torch.from_numpy(np.stack([wav, wav])), sr, 44100).numpy()  # (2, n)
    sf.write(tmp_path / "stereo.wav", stereo.T, 44100, subtype="FLOAT")
    from_wave = cap(stereo, 44100)
    assert from_wave == cap.caption_batch([(stereo, 44100)])[0] == cap(tmp_path / "stereo.wav")
    # The prompt holds exactly the frames asked for (1.5 s at the codec's frame rate).
    assert cap.encode(stereo, 44100).n_frames == round(1.5 * tokenizer.frame_rate)


def test_guided_captions_mix_in_the_text_template_as_the_unconditional_twin(model, tokenizer, real_audio_files):
    files = real_audio_files[:3]
    plain = captioner(model, tokenizer, seconds=1.0).caption_batch(files)
    guided = captioner(model, tokenizer, seconds=1.0, cfg_coef=3.0).caption_batch(files)
    assert guided != plain and len(set(guided)) > 1  # guidance changes the captions, the audio still matters
    # cfg_coef = 0 keeps only the twin: every clip gets the caption the text template writes alone
    # (under the same text constraint).
    from mmtok.generate.constraints import TextConstraint

    alone = generate(model, [text_prompt_ids(tokenizer)], GenerationConfig(max_new_tokens=24, greedy=True),
                     constraint=TextConstraint(tokenizer.layout))[0]
    prior = tokenizer.decode_text([i for i in alone if i != tokenizer.layout.eos_id]).strip()
    assert captioner(model, tokenizer, seconds=1.0, cfg_coef=0.0).caption_batch(files) == [prior] * 3


def test_default_length_fills_the_context_and_windows_cover_the_file(model, tokenizer, real_audio_files):
    cap = captioner(model, tokenizer, max_new_tokens=32)
    codes = cap.encode(real_audio_files[1])
    assert codes.n_frames == cap.max_frames()
    assert len(cap.prompt_ids(codes)) + 32 <= model.config.max_seq_len < len(cap.prompt_ids(codes)) + 32 + 4

    total = sf.info(real_audio_files[1]).duration
    windows = cap.caption_windows(real_audio_files[1], window=2.0)
    assert [round(a, 3) for a, _, _ in windows] == [2.0 * i for i in range(len(windows))]
    assert windows[-1][1] == pytest.approx(total, abs=1 / tokenizer.frame_rate + 1e-6)
    assert all(isinstance(c, str) for _, _, c in windows)


def test_bad_inputs(model, tokenizer, make_tiny_model, tmp_path, real_audio_files):
    cap = captioner(model, tokenizer, seconds=30.0)
    with pytest.raises(ValueError, match="prompt too long for the context: 30 s"):
        cap(real_audio_files[0])
    with pytest.raises(ValueError, match="prompt too long"):
        captioner(model, tokenizer).caption_windows(real_audio_files[0], window=60.0)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with pytest.raises(ValueError, match="notes.wav"):
        captioner(model, tokenizer, seconds=1.0)(bad)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        captioner(model, tokenizer, seconds=1.0)(tmp_path / "missing.wav")
    # A model trained on a smaller vocabulary cannot read this tokenizer's ids.
    with pytest.raises(LayoutMismatchError, match="another tokenizer"):
        Captioner(make_tiny_model(), tokenizer)
