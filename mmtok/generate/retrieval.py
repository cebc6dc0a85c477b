"""Retrieval by the model's own likelihood: how well does each caption fit each clip?

    scores = caption_scores(model, tokenizer, codes_list, captions)   # (n_audio, n_captions)

The score of (clip a, caption c) is the pointwise mutual information the captioning template
gives them:

    log p(c <eos> | <bos> <task_caption> <soa> a <eoa>)  -  log p(c <eos> | <bos> <task_text>)

The second term is the caption's prior under the text template (the unconditional twin that
guidance uses, so no extra training). It is the same for every clip, so ranking clips for a
caption (text -> audio) is ranking by log p(c | a); ranking captions for a clip (audio -> text)
needs it, or short and common captions win whatever the audio. `normalize="none"` gives
log p(c | a) alone.

Text -> audio is scored by p(caption | audio), not p(audio | caption): the audio's likelihood
costs a forward over every audio token for every pair (hundreds of tokens per second against a
caption's tens) and is dominated by how predictable the audio is, whatever the caption.

Cost: one forward of each clip's prompt (the prefix), whose KV cache is then copied to a batch of
captions and continued by all of them in one forward (`KVCache.expand`): one forward per batch of
pairs, and the audio is encoded once however many captions there are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmtok.data.templates import caption_prompt_ids, text_prompt_ids
from mmtok.generate.captioner import check_model_fits, unwrap
from mmtok.model.kv_cache import KVCache
from mmtok.tokenizer.codes import AudioCodes


@torch.inference_mode()
def continuation_logprobs(model, prefix: list[int], continuations: Sequence[list[int]],
                          batch_size: int = 64) -> np.ndarray:
    """Sum of log p(continuation_i | prefix) over its tokens, for each continuation (>= 1 id each).

    The prefix is run once (batch 1); its cache is expanded to each batch of continuations, which
    are right-padded (padding has doc id -1 and sees nothing real)."""
    model = unwrap(model)
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one id")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    longest = max((len(c) for c in continuations), default=1)
    if len(prefix) + longest - 1 > model.config.max_seq_len:
        raise ValueError(f"prompt ({len(prefix)}) + longest caption ({longest}) exceeds the model's context "
                         f"{model.config.max_seq_len}")
    try:
        cache = KVCache.for_model(model.config, 1, len(prefix), dtype=dtype, device=device)
        p = torch.tensor([prefix], dtype=torch.long, device=device)
        first = model(p, torch.arange(len(prefix), device=device)[None], torch.zeros_like(p, dtype=torch.int32),
                      kv_cache=cache)[0, -1].log_softmax(-1)  # (V,): the first continuation id
        out = np.zeros(len(continuations), dtype=np.float64)
        for lo in range(0, len(continuations), batch_size):
            chunk = continuations[lo : lo + batch_size]
            total = torch.stack([first[c[0]] for c in chunk]).double()
            width = max(len(c) for c in chunk) - 1
            if width > 0:
                b = len(chunk)
                tokens = torch.zeros(b, width, dtype=torch.long, device=device)
                doc = torch.full((b, width), -1, dtype=torch.int32, device=device)
                targets = torch.zeros(b, width, dtype=torch.long, device=device)
                mask = torch.zeros(b, width, dtype=torch.bool, device=device)
                for i, c in enumerate(chunk):
                    n = len(c) - 1
                    tokens[i, :n] = torch.as_tensor(c[:-1])
                    targets[i, :n] = torch.as_tensor(c[1:])
                    doc[i, :n] = 0
                    mask[i, :n] = True
                positions = (len(prefix) + torch.arange(width, device=device))[None].expand(b, width)
                step = cache.expand(b, len(prefix) + width)
                logp = model(tokens, positions, doc, kv_cache=step).log_softmax(-1)  # (B, W, V)
                picked = logp.gather(-1, targets[..., None])[..., 0].double()
                total = total + (picked * mask).sum(-1)
            out[lo : lo + len(chunk)] = total.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def caption_scores(model, tokenizer, codes: Sequence[AudioCodes], captions: Sequence[str],
                   normalize: str = "pmi", batch_size: int = 64, progress=None) -> np.ndarray:
    """(n_audio, n_captions) scores: log p(caption | clip), minus the caption's prior with
    normalize="pmi" (default; see the module docstring). `progress`: called with each clip index."""
    if normalize not in ("pmi", "none"):
        raise ValueError(f"normalize must be 'pmi' or 'none', got {normalize!r}")
    if not codes or not captions:
        raise ValueError("retrieval needs at least one clip and one caption")
    model = unwrap(model)
    check_model_fits(model, tokenizer)
    eos = tokenizer.layout.eos_id
    conts = []
    for n, c in enumerate(captions):
        ids = tokenizer.encode_text(c)
        if not ids:
            raise ValueError(f"caption {n} is empty")
        conts.append(ids + [eos])
    prior = continuation_logprobs(model, text_prompt_ids(tokenizer), conts, batch_size) if normalize == "pmi" else 0.0
    rows = []
    for a, c in enumerate(codes):
        prefix = caption_prompt_ids(tokenizer, tokenizer.codes_to_ids(c))
        rows.append(continuation_logprobs(model, prefix, conts, batch_size) - prior)
        if progress is not None:
            progress(a)
    return np.stack(rows)
