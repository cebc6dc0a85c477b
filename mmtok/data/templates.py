"""Interleaving (early fusion): one sample (audio codes + caption) -> one token document.

Four templates, AnyGPT-style, each opened by a task token so the model knows what to write:

    caption   <bos> <task_caption>  [instruction] <soa> audio <eoa> caption <eos>   target: caption <eos>
    generate  <bos> <task_generate> [instruction] caption <soa> audio <eoa> <eos>   target: audio <eoa> <eos>
    text      <bos> <task_text> caption <eos>                                       target: caption <eos>
    audio     <bos> <task_audio> <soa> audio <eoa> <eos>                            target: audio <eoa> <eos>

Items of the other tasks (`mmtok.data.tasks`) make their own documents:

    qa        <bos> <task_qa> q1 <soa> audio <eoa> q1 <sep> a1 <eos> q2 <sep> a2 <eos> ...  target: each answer <eos>
    segments  <bos> <task_segments> <soa> audio <eoa> 0:00-0:05 text. 0:05-0:09 text. <eos>  target: the stamped text <eos>
    playlist  <bos> <task_playlist> <soa> clip1 <eoa> ... <soa> clipN <eoa> caption <eos>   target: caption <eos>

A caption item (no `task`) draws its template with the same random numbers whatever the task
settings, so a data set of caption items gives the same documents under any task mix.

The same builders make the inference prompts (`caption_prompt_ids`, `generate_prompt_ids`), so
training and generation cannot drift apart. The text and audio templates are the unconditional
twins of those two (a caption with no audio, audio with no caption): classifier-free guidance
prompts them with `text_prompt_ids` and `audio_prompt_ids`. Audio longer than the token budget
is cropped on frame boundaries (all codebooks of a frame together) at a random start; audio with
per-segment scales (encodec_48khz) on segment boundaries, whole segments with their scales.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from mmtok.data.tasks import format_segments, shift_segments
from mmtok.tokenizer.codes import (
    SCALE_BYTES,
    AudioCodes,
    crop_segments,
    longest_segment_length,
    segment_frame_counts,
    segment_starts,
    segment_stride,
)
from mmtok.tokenizer.layout import (
    SEP,
    TASK_AUDIO,
    TASK_CAPTION,
    TASK_GENERATE,
    TASK_PLAYLIST,
    TASK_QA,
    TASK_SEGMENTS,
    TASK_TEXT,
)

TEMPLATES = ("caption", "generate", "text", "audio")
TASK_TEMPLATES = ("qa", "segments", "playlist")  # each made only from items of its task
TASK_TOKENS = {"qa": (TASK_QA, SEP), "segments": (TASK_SEGMENTS,), "playlist": (TASK_PLAYLIST,)}
TASK_NAMES = {"qa": "question answering", "segments": "time-stamped captions", "playlist": "playlist captions"}


def require_task_tokens(tok, task: str) -> None:
    """Raise (naming the task and saying to rebuild the tokenizer) if `tok` lacks the task's specials."""
    tok.layout.require_specials(TASK_TOKENS[task], TASK_NAMES[task])
log = logging.getLogger(__name__)
_WARNED: set[str] = set()

# Instruction wording varies (AnyGPT's instruction lists), so the model keys on the task token and
# the audio, not on one sentence. An instruction is optional: `instruction=None` leaves it out.
CAPTION_INSTRUCTIONS = (
    "Describe this music.",
    "Write a caption for this audio clip.",
    "What do you hear in this recording?",
    "Describe the instrument, tempo, key and meter of this music.",
    "Give a short description of this piece.",
    "Caption the following music.",
    "Listen to the clip and describe it.",
    "Summarise this music in one sentence.",
)
GENERATE_INSTRUCTIONS = (
    "Generate music that matches this description:",
    "Play the following:",
    "Create an audio clip of",
    "Compose music from this caption:",
    "Render this description as audio:",
    "Make a recording of",
    "Produce music like this:",
    "Synthesize the music described here:",
)


def instruction_texts() -> list[str]:
    """Every instruction sentence (the SentencePiece training text includes them)."""
    return [*CAPTION_INSTRUCTIONS, *GENERATE_INSTRUCTIONS]


@dataclass
class TemplateConfig:
    p_caption: float = 0.5  # audio -> text (captioning)
    p_generate: float = 0.2  # text -> audio
    p_text: float = 0.1  # text only (the caption as a language-model document)
    p_audio: float = 0.2  # audio only (audio continuation)
    p_instruction: float = 0.5  # chance an instruction sentence follows the task token
    loss_on_target_only: bool = True  # loss on the target segment only (else on every next token)
    use_references: bool = True  # a clip with `references` (more captions) trains on one of its
    #                              captions drawn at random each time; False = its `text` only
    min_audio_share: float = 1.0  # augmentation: each use of a clip keeps a random window of at
    #                               least this share of its frames (1.0: all of it that fits the row)
    # The task mix. Items of a task are what the data holds; these only act on such items, so a
    # data set of caption items trains the same whatever they are.
    p_segments: float = 1.0  # weight of the segments template beside the four above, for segments items
    #                          with a caption of the whole (those without use only it)
    mix_caption: float = 1.0  # chance that an item of each task is used when the stream reads it
    mix_qa: float = 1.0  #        (1: always, no random number drawn; 0: never): the share of each
    mix_segments: float = 1.0  #  task's items in training. qa and playlist items use their own
    mix_playlist: float = 1.0  #  template only
    qa_turns: int = 0  # turns of a qa item one document trains, drawn at random (0: all that fit, in a
    #                    random order). Fact questions about one clip give each other's answers away
    #                    (the instrument names the family, the key the mode); 1 trains every answer on
    #                    the audio alone, as `mmtok ask` asks each question

    def __post_init__(self):
        if not 0.0 < self.min_audio_share <= 1.0:
            raise ValueError(f"min_audio_share must be in (0, 1], got {self.min_audio_share}")
        if self.p_segments < 0:
            raise ValueError(f"p_segments must be >= 0, got {self.p_segments}")
        if self.qa_turns < 0:
            raise ValueError(f"qa_turns must be >= 0 (0: all turns), got {self.qa_turns}")
        for name in ("mix_caption", "mix_qa", "mix_segments", "mix_playlist"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def probabilities(self) -> np.ndarray:
        p = np.array([self.p_caption, self.p_generate, self.p_text, self.p_audio], dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"template probabilities must be >= 0 with a positive sum, got {p}")
        return p / p.sum()


@dataclass
class Document:
    ids: np.ndarray  # (L,) int64 token ids, <bos> first
    loss: np.ndarray  # (L,) bool: ids[i] is a target that carries loss (ids[0] never is)
    template: str  # which of TEMPLATES made it


# ---- prompts (shared by training and inference) -----------------------------------------------
def _task(tok, name: str) -> list[int]:
    return [tok.layout.bos_id, tok.layout.id_of(name)]


def _instruction(tok, instruction: str | None) -> list[int]:
    return tok.encode_text(instruction) if instruction else []


def caption_prompt_ids(tok, audio_ids, instruction: str | None = None) -> list[int]:
    """`<bos> <task_caption> [instruction] <soa> audio <eoa>`; the model then writes caption <eos>.

    `audio_ids` is what `tok.codes_to_ids(codes)` returns (it includes <soa> and <eoa>)."""
    audio_ids = [int(i) for i in audio_ids]
    if not audio_ids or audio_ids[0] != tok.layout.soa_id or audio_ids[-1] != tok.layout.eoa_id:
        raise ValueError("audio_ids must be `<soa> ... <eoa>` as tok.codes_to_ids returns")
    return _task(tok, TASK_CAPTION) + _instruction(tok, instruction) + audio_ids


def generate_prompt_ids(tok, caption: str, instruction: str | None = None) -> list[int]:
    """`<bos> <task_generate> [instruction] caption <soa>`; the model then writes audio <eoa>."""
    return _task(tok, TASK_GENERATE) + _instruction(tok, instruction) + tok.encode_text(caption) + [
        tok.layout.soa_id
    ]


def text_prompt_ids(tok) -> list[int]:
    """`<bos> <task_text>`; the model then writes a caption that no audio conditions."""
    return _task(tok, TASK_TEXT)


def audio_prompt_ids(tok) -> list[int]:
    """`<bos> <task_audio> <soa>` (the audio template up to its first audio id); the model then
    writes audio that no caption conditions."""
    return _task(tok, TASK_AUDIO) + [tok.layout.soa_id]


def _check_audio_ids(tok, audio_ids) -> list[int]:
    audio_ids = [int(i) for i in audio_ids]
    if not audio_ids or audio_ids[0] != tok.layout.soa_id or audio_ids[-1] != tok.layout.eoa_id:
        raise ValueError("audio_ids must be `<soa> ... <eoa>` as tok.codes_to_ids returns")
    return audio_ids


def ids_besides_audio(tok, prompt_ids, *args) -> int:
    """How many ids the prompt builder `prompt_ids(tok, audio_ids, *args)` adds around the audio."""
    return len(prompt_ids(tok, [tok.layout.soa_id, tok.layout.eoa_id], *args)) - 2


def question_ids(tok, question: str) -> list[int]:
    """A question's text ids (spaces collapsed); never empty."""
    ids = tok.encode_text(" ".join(question.split()))
    if not ids:
        raise ValueError("a question needs some text")
    return ids


def qa_prompt_ids(tok, audio_ids, question: str) -> list[int]:
    """`<bos> <task_qa> question <soa> audio <eoa> question <sep>`; the model then writes answer <eos>.

    The caption prompt with the question where the caption's instruction goes, so the audio is read
    with the question in view, at the place a caption reads it; and the question again right before
    its answer, so the answer does not have to find it back across the audio (a few hundred ids)."""
    require_task_tokens(tok, "qa")
    q = question_ids(tok, question)
    return _task(tok, TASK_QA) + q + _check_audio_ids(tok, audio_ids) + q + [tok.layout.id_of(SEP)]


def segments_prompt_ids(tok, audio_ids) -> list[int]:
    """`<bos> <task_segments> <soa> audio <eoa>`; the model then writes `0:00-0:05 text. ...` <eos>."""
    require_task_tokens(tok, "segments")
    return _task(tok, TASK_SEGMENTS) + _check_audio_ids(tok, audio_ids)


def playlist_prompt_ids(tok, clips_ids) -> list[int]:
    """`<bos> <task_playlist> <soa> clip1 <eoa> ... <soa> clipN <eoa>`; the model then writes the
    set's caption <eos>."""
    require_task_tokens(tok, "playlist")
    return _task(tok, TASK_PLAYLIST) + [i for ids in clips_ids for i in _check_audio_ids(tok, ids)]


# ---- cropping -----------------------------------------------------------------------------------
def audio_token_cost(tok) -> tuple[int, int]:
    """(fixed, per_frame): codes_to_ids of T frames has fixed + per_frame*T ids (no-scale codecs;
    segmented codecs add SCALE_BYTES per segment: see `audio_id_count`, `frames_that_fit`)."""
    cost = getattr(tok, "_mmtok_audio_cost", None)
    if cost is None:
        k = tok.config.n_codebooks
        cost = (2, tok.layout.rows_per_frame)  # <soa> <eoa>, then K ids (+ the semantic id) per frame
        if not tok.layout.n_scale_tokens:  # measured on the tokenizer itself, so it cannot drift
            n1, n2 = (len(tok.codes_to_ids(_zeros(tok, k, t))) for t in (1, 2))
            cost = (n1 - (n2 - n1), n2 - n1)
        tok._mmtok_audio_cost = cost
    return cost


def _zeros(tok, k: int, t: int) -> AudioCodes:
    semantic = np.zeros(t, np.int64) if tok.layout.n_semantic else None
    return AudioCodes(np.zeros((k, t), np.int64), t * tok.config.hop, tok.sample_rate, tok.config.codec,
                      semantic=semantic)


def _segmented(tok) -> bool:
    return bool(tok.layout.n_scale_tokens)


def audio_id_count(tok, n_frames: int) -> int:
    """Ids of `<soa> audio <eoa>` for a crop of `n_frames` frames (from a segment start)."""
    fixed, per_frame = audio_token_cost(tok)
    if not _segmented(tok):
        return fixed + per_frame * n_frames
    cfg = tok.config
    n = longest_segment_length(n_frames, cfg.frames_per_segment, cfg.hop)
    counts = segment_frame_counts(n, cfg.frames_per_segment, cfg.hop)
    return fixed + SCALE_BYTES * len(counts) + per_frame * sum(counts)


def frames_that_fit(tok, budget: int) -> int:
    """The most frames whose `<soa> audio <eoa>` ids fit in `budget` ids (0: none fit). With
    per-segment scales (encodec_48khz) every started segment also costs its 4 scale bytes, and a
    crop of whole segments holds at most frames_per_segment - 1 frames in its last one."""
    fixed, per_frame = audio_token_cost(tok)
    if not _segmented(tok):
        return max(0, (budget - fixed) // per_frame)
    fps = tok.config.frames_per_segment
    room = budget - fixed
    segment = SCALE_BYTES + per_frame * fps  # a whole segment's ids
    if room < SCALE_BYTES + per_frame:
        return 0
    full = (room - SCALE_BYTES - per_frame) // segment  # whole segments before a last one of >= 1 frame
    last = min(fps, (room - full * segment - SCALE_BYTES) // per_frame)
    frames = full * fps + last
    while frames > 0 and audio_id_count(tok, frames) > budget:  # the last segment's cap
        frames -= 1
    return frames


def crop_codes(codes: AudioCodes, start: int, n_frames: int, hop: int) -> AudioCodes:
    """Frames [start, start + n_frames) of every codebook (a crop never splits a frame).

    Codes with per-segment scales (encodec_48khz) are cropped on segment boundaries: `start` must
    be the first frame of a segment, and the crop keeps whole segments with their scales, as
    many frames as a valid audio length gives within `n_frames` (the last kept segment can lose
    its final frame, which lies in the next segment's 1% overlap; `crop_segments`)."""
    if codes.scales is not None:
        fps = codes.frames_per_segment
        starts = segment_starts(codes.n_samples, fps, hop)
        if start not in starts:
            raise ValueError(f"frame {start} is not a segment boundary of {codes.codec} codes (segments start at "
                             f"frames {starts[:4]}...): crops of codes with per-segment scales keep whole segments")
        return crop_segments(codes, starts.index(start), longest_segment_length(n_frames, fps, hop), hop)
    end = min(codes.n_frames, start + n_frames)
    n_samples = min(codes.n_samples - start * hop, (end - start) * hop)
    return AudioCodes(codes.codes[:, start:end], n_samples, codes.sample_rate, codes.codec, gain_db=codes.gain_db,
                      semantic=None if codes.semantic is None else codes.semantic[start:end])


def section_codes(codes: AudioCodes, start_s: float, end_s: float, hop: int) -> AudioCodes | None:
    """The codes of the seconds [start_s, end_s) of `codes` (None when that holds none of their
    frames). Codes with per-segment scales (encodec_48khz) start at the segment `start_s` lies in."""
    start_s, end_s = max(0.0, start_s), min(codes.duration, end_s)
    if end_s <= start_s:
        return None
    sr = codes.sample_rate
    if codes.scales is not None:
        stride = segment_stride(codes.frames_per_segment, hop)
        first = int(start_s * sr) // stride
        return crop_segments(codes, first, round(end_s * sr) - first * stride, hop)
    start = min(int(start_s * sr / hop), codes.n_frames - 1)
    return crop_codes(codes, start, max(1, round(end_s * sr / hop) - start), hop)


def random_crop(codes: AudioCodes, n_frames: int, hop: int, rng: np.random.Generator) -> AudioCodes:
    """A crop of at most `n_frames` frames at a random start: any frame, or for codes with
    per-segment scales any segment from which the crop's whole length is still audio."""
    if codes.scales is None:
        return crop_codes(codes, int(rng.integers(codes.n_frames - n_frames + 1)), n_frames, hop)
    fps = codes.frames_per_segment
    length = longest_segment_length(n_frames, fps, hop)
    first = int(rng.integers(max(0, codes.n_samples - length) // segment_stride(fps, hop) + 1))
    return crop_segments(codes, first, length, hop)


def fit_audio(tok, codes: AudioCodes, budget: int, rng: np.random.Generator, min_share: float = 1.0) -> list[int]:
    """`<soa> audio <eoa>` ids of at most `budget` tokens: a random crop if the clip is longer.
    With `min_share` < 1, a random window of a random length, at least that share of the frames
    that fit (crop augmentation); at 1 no number is drawn for a clip that fits. At least one
    frame is kept when none fits (the packer then splits the document)."""
    n_frames = min(codes.n_frames, max(1, frames_that_fit(tok, budget)))
    if min_share < 1.0:
        n_frames = int(rng.integers(max(1, math.ceil(min_share * n_frames)), n_frames + 1))
    if codes.n_frames > n_frames:
        codes = random_crop(codes, n_frames, tok.config.hop, rng)
    return tok.codes_to_ids(codes)


# ---- documents ----------------------------------------------------------------------------------
def pick_caption(captions: list[str], rng: np.random.Generator, cfg: TemplateConfig) -> str:
    """The caption a document uses: the first, or with `use_references` one drawn at random.
    A clip with one caption draws nothing, so single-caption data keeps its random stream."""
    if len(captions) == 1 or not cfg.use_references:
        return captions[0]
    return captions[int(rng.integers(len(captions)))]


def make_document(tok, codes: AudioCodes, caption: str, rng: np.random.Generator,
                  cfg: TemplateConfig, max_tokens: int, template: str | None = None) -> Document:
    """One document from one sample, template drawn from `cfg` (or the one given); at most
    `max_tokens` ids unless the caption alone is longer (the packer then splits it, see packing.py)."""
    if template is None:
        template = TEMPLATES[int(rng.choice(len(TEMPLATES), p=cfg.probabilities()))]
    eos = [tok.layout.eos_id]
    use_instruction = rng.random() < cfg.p_instruction
    if template == "caption":
        instr = CAPTION_INSTRUCTIONS[int(rng.integers(len(CAPTION_INSTRUCTIONS)))] if use_instruction else None
        text = tok.encode_text(caption) + eos
        head = _task(tok, TASK_CAPTION) + _instruction(tok, instr)
        audio = fit_audio(tok, codes, max_tokens - len(head) - len(text), rng, cfg.min_audio_share)
        prompt, target = caption_prompt_ids(tok, audio, instr), text
    elif template == "generate":
        instr = GENERATE_INSTRUCTIONS[int(rng.integers(len(GENERATE_INSTRUCTIONS)))] if use_instruction else None
        prompt = generate_prompt_ids(tok, caption, instr)
        # <soa> ends the prompt and starts the audio: counted once
        audio = fit_audio(tok, codes, max_tokens - len(prompt) + 1 - len(eos), rng, cfg.min_audio_share)
        target = audio[1:] + eos
    elif template == "text":
        prompt, target = text_prompt_ids(tok), tok.encode_text(caption) + eos
    else:
        prompt = _task(tok, TASK_AUDIO)
        target = fit_audio(tok, codes, max_tokens - len(prompt) - len(eos), rng, cfg.min_audio_share) + eos
    ids = np.asarray(prompt + target, dtype=np.int64)
    loss = np.zeros(len(ids), dtype=bool)
    loss[len(prompt) if cfg.loss_on_target_only else 1 :] = True
    return Document(ids, loss, template)


def _document(prompt: list[int], target: list[int], loss_spans, cfg: TemplateConfig, template: str) -> Document:
    """prompt + target; `loss_spans`: (start, stop) ranges of `target` that carry loss."""
    ids = np.asarray(prompt + target, dtype=np.int64)
    loss = np.zeros(len(ids), dtype=bool)
    if cfg.loss_on_target_only:
        for a, b in loss_spans:
            loss[len(prompt) + a : len(prompt) + b] = True
    else:
        loss[1:] = True
    return Document(ids, loss, template)


def qa_document(tok, codes: AudioCodes, turns: list[dict], rng: np.random.Generator, cfg: TemplateConfig,
                max_tokens: int) -> Document:
    """The turns in a random order: the first as its inference prompt (`qa_prompt_ids`), `<bos>
    <task_qa> q1 <soa> audio <eoa> q1 <sep>`, then a1 <eos>, the others as follow-ups `q <sep> a
    <eos>`; loss on the answers and their <eos>. Turns are kept while their text takes at most
    half the row (at least one), and at most `cfg.qa_turns` of them when that is set; the audio
    gets the rest."""
    order = rng.permutation(len(turns)) if len(turns) > 1 else [0]
    picked = [turns[int(j)] for j in (order[: cfg.qa_turns] if cfg.qa_turns else order)]
    around = ids_besides_audio(tok, qa_prompt_ids, picked[0]["q"])
    text = tok.encode_text(picked[0]["a"]) + [tok.layout.eos_id]
    spans = [(0, len(text))]
    for turn in picked[1:]:
        q = question_ids(tok, turn["q"]) + [tok.layout.id_of(SEP)]
        a = tok.encode_text(turn["a"]) + [tok.layout.eos_id]
        if around + len(text) + len(q) + len(a) > max_tokens // 2:
            break
        spans.append((len(text) + len(q), len(text) + len(q) + len(a)))
        text += q + a
    audio = fit_audio(tok, codes, max_tokens - around - len(text), rng, cfg.min_audio_share)
    return _document(qa_prompt_ids(tok, audio, picked[0]["q"]), text, spans, cfg, "qa")


def segments_document(tok, codes: AudioCodes, segments: list[dict], rng: np.random.Generator, cfg: TemplateConfig,
                      max_tokens: int) -> Document:
    """`<bos> <task_segments> <soa> audio <eoa> 0:00-0:05 text. ... <eos>`; loss on the stamped text.
    Audio longer than the row is cropped at a whole second (at 0 for codes with per-segment scales)
    and the sections re-timed to the crop, so the stamps stay true."""
    head = _task(tok, TASK_SEGMENTS)
    require_task_tokens(tok, "segments")
    eos = [tok.layout.eos_id]
    reserve = len(tok.encode_text(format_segments(segments))) + len(eos)
    fit = max(1, frames_that_fit(tok, max_tokens - len(head) - reserve))
    fr, hop = tok.frame_rate, tok.config.hop
    if codes.n_frames > fit:
        start = 0
        if codes.scales is None:
            last_second = int((codes.n_frames - fit) / fr)
            start = min(codes.n_frames - fit, round(int(rng.integers(last_second + 1)) * fr))
        crop = crop_codes(codes, start, fit, hop)
        shifted = shift_segments(segments, start * hop / codes.sample_rate,
                                 start * hop / codes.sample_rate + crop.n_samples / codes.sample_rate)
        codes, segments = crop, shifted or segments[:1]
    prompt = head + tok.codes_to_ids(codes)
    target = tok.encode_text(format_segments(segments)) + eos
    return _document(prompt, target, [(0, len(target))], cfg, "segments")


def playlist_document(tok, clips: list[AudioCodes], caption: str, rng: np.random.Generator, cfg: TemplateConfig,
                      max_tokens: int) -> Document:
    """`<bos> <task_playlist> <soa> clip <eoa> ... caption <eos>`; loss on the caption. The row's
    audio budget is shared equally by the clips, each cropped (at random) to its share."""
    head = _task(tok, TASK_PLAYLIST)
    require_task_tokens(tok, "playlist")
    target = tok.encode_text(caption) + [tok.layout.eos_id]
    share = (max_tokens - len(head) - len(target)) // len(clips)
    audio = [i for c in clips for i in fit_audio(tok, c, share, rng, cfg.min_audio_share)]
    return _document(head + audio, target, [(0, len(target))], cfg, "playlist")


def task_document(tok, meta: dict, clips: list[AudioCodes], captions: list[str], rng: np.random.Generator,
                  cfg: TemplateConfig, max_tokens: int) -> Document | None:
    """The document one sample makes, by its task (`meta["task"]`; none: a caption item), or None
    when the task mix leaves the sample out. A caption item draws its caption
    (`pick_caption`), then `make_document`, with no other random number."""
    task = meta.get("task") or "caption"
    if task in TASK_TOKENS and not all(t in tok.layout.special_tokens for t in TASK_TOKENS[task]):
        # A layout without the task's tokens: the item trains as a caption item.
        if task not in _WARNED:
            _WARNED.add(task)
            log.warning("%s items train as caption items: this tokenizer's layout (%s) has no %s; rebuild "
                        "the tokenizer to train the task", task, tok.layout.hash, " ".join(TASK_TOKENS[task]))
        task = "caption"
    keep = getattr(cfg, f"mix_{task}", None)
    if keep is None:
        raise ValueError(f"sample of unknown task {task!r}")
    if keep < 1.0 and rng.random() >= keep:
        return None
    if task == "caption":
        return make_document(tok, clips[0], pick_caption(captions, rng, cfg), rng, cfg, max_tokens)
    if task == "qa":
        return qa_document(tok, clips[0], meta["qa"], rng, cfg, max_tokens)
    if task == "playlist":
        return playlist_document(tok, clips, pick_caption(captions, rng, cfg), rng, cfg, max_tokens)
    # segments: the stamped sections, or (with a caption of the whole) one of the four templates
    if meta.get("global_caption", True):
        p = np.array([cfg.p_caption, cfg.p_generate, cfg.p_text, cfg.p_audio, cfg.p_segments], dtype=np.float64)
        if p.sum() <= 0:
            return None
        choice = int(rng.choice(len(p), p=p / p.sum()))
        if choice < len(TEMPLATES):
            return make_document(tok, clips[0], pick_caption(captions, rng, cfg), rng, cfg, max_tokens,
                                 template=TEMPLATES[choice])
    elif cfg.p_segments <= 0:
        return None
    return segments_document(tok, clips[0], meta["segments"], rng, cfg, max_tokens)
