"""The evaluations an entry point gives the training loop: held-out loss and sample captions.

Both read `data.valid_shards` as a single-rank stream on EVERY rank (each rank sees the same
batches): FSDP2 forwards are collective, so all ranks must run the same number of forwards;
and a small validation split need not have a shard per rank. Rank 0 logs the results.
"""

from __future__ import annotations

import dataclasses

from mmtok.config import RunConfig
from mmtok.data.stream import ShardStream, StreamConfig, resolve_shards
from mmtok.eval.perplexity import modality_perplexity
from mmtok.generate.captioner import CaptionConfig, Captioner
from mmtok.generate.sampling import GenerationConfig
from mmtok.training.callbacks import EvalCallback, SampleTable


class ValidationLoss:
    """{"val/loss", "val/loss_text", "val/loss_audio", "val/ppl"} over the first `max_rows` rows.

    One row per batch: the loader drops a final partial batch, which would leave a small
    validation split with nothing; the summed loss does not depend on the batching anyway."""

    def __init__(self, data_cfg, max_rows: int):
        self.data_cfg = dataclasses.replace(data_cfg, workers=0, batch_size=1)
        self.max_rows = max_rows

    def __call__(self, model, tokenizer, step: int) -> dict:
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
    clips, decoded greedily by the same `Captioner` inference uses. The clips are read at the
    first call (the tokenizer's layout hash checks them)."""

    def __init__(self, valid_shards, n: int, max_new_tokens: int = 48):
        self.valid_shards, self.n, self.max_new_tokens = valid_shards, n, max_new_tokens
        self.samples: list | None = None

    def read_samples(self, tokenizer) -> list:
        stream = ShardStream(resolve_shards(self.valid_shards), StreamConfig(shuffle_buffer=0, epochs=1),
                             layout_hash=tokenizer.layout.hash)
        samples = []
        for sample in stream:
            samples.append(sample)
            if len(samples) == self.n:
                break
        return samples

    def __call__(self, model, tokenizer, step: int) -> dict:
        if self.samples is None:
            self.samples = self.read_samples(tokenizer)
        config = CaptionConfig(batch_size=len(self.samples) or 1,
                               generation=GenerationConfig(max_new_tokens=self.max_new_tokens, greedy=True))  # fmt: skip
        captions = Captioner(model, tokenizer, config).caption_batch([s.codes for s in self.samples])
        rows = [[step, s.key, s.text, c] for s, c in zip(self.samples, captions)]
        return {"samples/captions": SampleTable(["step", "clip", "reference", "generated"], rows)}


def default_evals(cfg: RunConfig) -> list[EvalCallback]:
    """Validation loss and sample captions when the config names validation shards."""
    if not cfg.train.eval_interval or not cfg.data.valid_shards:
        return []
    evals: list[EvalCallback] = [ValidationLoss(cfg.data, cfg.train.eval_sequences)]
    if cfg.train.eval_captions:
        evals.append(SampleCaptions(cfg.data.valid_shards, cfg.train.eval_captions))
    return evals
