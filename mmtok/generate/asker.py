"""Music question answering: audio + questions -> one answer per question.

    ask = Asker.from_checkpoint("runs/demo")               # or Asker(model, tokenizer)
    ask("clip.flac", ["What instrument plays?", "Is it major or minor?"])   # -> [str, str]
    ask.ask_batch([("a.wav", ["q1"]), ("b.wav", ["q1", "q2"])])

Each question is its own prompt, `mmtok.data.templates.qa_prompt_ids`: `<bos> <task_qa> question
<soa> audio <eoa> question <sep>`, the training template's first turn, so answers do not depend
on the other questions asked. The questions about a clip are decoded together in one batch.
Answers are text only (`TextConstraint`), greedy by default. The audio is the input's first
seconds: as many whole frames as fit the context beside the longest question's prompt and a
`max_new_tokens` answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mmtok.data.templates import frames_that_fit, ids_besides_audio, qa_prompt_ids, require_task_tokens
from mmtok.generate.captioner import CaptionConfig, Captioner
from mmtok.tokenizer.codes import AudioCodes


class Asker(Captioner):
    """A `Captioner` that answers questions (same checkpoint loading, config and batching)."""

    def __init__(self, model, tokenizer, config: CaptionConfig | None = None):
        super().__init__(model, tokenizer, config)
        require_task_tokens(tokenizer, "qa")

    def frames_for(self, questions: Sequence[str]) -> int:
        """Audio frames a prompt holds next to the longest of `questions` and the answer."""
        overhead = max(ids_besides_audio(self.tokenizer, qa_prompt_ids, q) for q in questions)
        limit = frames_that_fit(self.tokenizer, self.context - self.max_new_tokens - overhead)
        if limit < 1:
            raise ValueError(f"no audio fits: the context is {self.context} tokens, the longest question's "
                             f"prompt {overhead} besides the audio and max_new_tokens={self.max_new_tokens}; "
                             f"shorten them")
        if self.config.seconds is None:
            return limit
        frames = math.ceil(self.config.seconds * self.tokenizer.frame_rate)
        if frames > limit:
            raise ValueError(f"prompt too long for the context: {self.config.seconds:g} s of audio is {frames} "
                             f"frames, at most {limit} ({limit / self.tokenizer.frame_rate:.2f} s) fit beside "
                             f"these questions")
        return frames

    @staticmethod
    def _check(audio, questions, name: str = "") -> list[str]:
        where = f" ({name})" if name else ""
        if audio is None or (isinstance(audio, str) and not audio.strip()):
            raise ValueError(f"a question needs its audio{where}: no audio given")
        if isinstance(questions, str):
            questions = [questions]
        questions = list(questions or [])
        if not questions or not all(isinstance(q, str) and q.strip() for q in questions):
            raise ValueError(f"at least one non-empty question is needed{where}")
        return questions

    def answer_codes(self, pairs: Sequence[tuple[AudioCodes, Sequence[str]]]) -> list[list[str]]:
        """Answers for already-encoded clips, each with its questions (decoded in batches)."""
        tok = self.tokenizer
        prompts = [qa_prompt_ids(tok, tok.codes_to_ids(codes), q) for codes, qs in pairs for q in qs]
        flat = self.generate_text(prompts)
        out, at = [], 0
        for _, qs in pairs:
            out.append(flat[at : at + len(qs)])
            at += len(qs)
        return out

    def ask_batch(self, items: Sequence[tuple], sample_rate: int | None = None) -> list[list[str]]:
        """[(audio, questions), ...] -> [[answer, ...], ...]; audio as `Captioner.encode` takes it."""
        pairs = []
        for n, (audio, questions) in enumerate(items):
            questions = self._check(audio, questions, str(audio) if isinstance(audio, str) else f"item {n}")
            pairs.append((self.encode(audio, sample_rate, self.frames_for(questions)), questions))
        return self.answer_codes(pairs)

    def __call__(self, audio, questions, sample_rate: int | None = None) -> list[str]:
        """Answers to `questions` (a string or a list) about one input."""
        return self.ask_batch([(audio, questions)], sample_rate)[0]
