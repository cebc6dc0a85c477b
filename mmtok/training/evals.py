"""What the loop runs every `train.eval_interval` steps: held-out loss and sample captions.

Both read `data.valid_shards` as a single-rank stream on EVERY rank (each rank sees the same
batches): FSDP2 forwards are collective, so all ranks must run the same number of forwards;
and a small validation split need not have a shard per rank. Rank 0 logs the results.
"""

from __future__ import annotations

import dataclasses

import torch


class ValidationLoss:
    """{"val/loss", "val/loss_text", "val/loss_audio", "val/ppl"} over the first `max_rows` rows.

    One row per batch: the loader drops a final partial batch, which would leave a small
    validation split with nothing; the summed loss does not depend on the batching anyway."""

    def __init__(self, data_cfg, max_rows: int):
        self.data_cfg = dataclasses.replace(data_cfg, workers=0, batch_size=1)
        self.max_rows = max_rows

    def __call__(self, model, tokenizer, step: int) -> dict:
        from mmtok.eval.perplexity import modality_perplexity

        batches = self.data_cfg.build(tokenizer, rank=0, world_size=1, split="valid")
        device = next(model.parameters()).device
        ppl = modality_perplexity(model, batches, device=device, max_batches=self.max_rows)
        out = {"val/loss": ppl["all"]["loss"], "val/ppl": ppl["all"]["perplexity"]}
        for name in ("text", "audio"):
            if ppl[name]["loss"] is not None:
                out[f"val/loss_{name}"] = ppl[name]["loss"]
        return out


class SampleCaptions:
    """A table of (step, clip, reference caption, generated caption) for the first `n` held-out
    clips, decoded greedily by the same `Captioner` inference uses."""

    def __init__(self, data_cfg, tokenizer, n: int, max_new_tokens: int = 48):
        from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards

        urls = resolve_shards(data_cfg.valid_shards)
        stream = ShardStream(urls, StreamConfig(shuffle_buffer=0, epochs=1), layout_hash=tokenizer.layout.hash)
        self.samples = []
        for sample in stream:
            self.samples.append(sample)
            if len(self.samples) == n:
                break
        self.max_new_tokens = max_new_tokens

    def __call__(self, model, tokenizer, step: int) -> dict:
        from mmtok.generate.captioner import CaptionConfig, Captioner
        from mmtok.generate.sampling import GenerationConfig
        from mmtok.training.loop import SampleTable

        config = CaptionConfig(batch_size=len(self.samples) or 1,
                               generation=GenerationConfig(max_new_tokens=self.max_new_tokens, greedy=True))  # fmt: skip
        captioner = Captioner(model, tokenizer, config)
        with torch.no_grad():
            captions = captioner.caption_batch([s.codes for s in self.samples])
        rows = [[step, s.key, s.text, c] for s, c in zip(self.samples, captions)]
        return {"samples/captions": SampleTable(["step", "clip", "reference", "generated"], rows)}


def default_evals(cfg, tokenizer) -> list:
    """Validation loss and sample captions when the config names validation shards."""
    if not cfg.train.eval_interval or not cfg.data.valid_shards:
        return []
    evals = [ValidationLoss(cfg.data, cfg.train.eval_sequences)]
    if cfg.train.eval_captions:
        evals.append(SampleCaptions(cfg.data, tokenizer, cfg.train.eval_captions))
    return evals
