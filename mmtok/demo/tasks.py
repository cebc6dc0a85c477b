"""Task data from a built demo corpus: questions and answers, multi-section pieces, playlists.

    build_task_data("runs/demo/corpus", "runs/demo/tasks", seed=0)
    mmtok data demo-tasks --corpus runs/demo/corpus --out runs/demo/tasks

Everything comes from the facts the corpus knows about each clip (as LLark builds its Q&A from
metadata), per split, never mixing splits (test playlists and pieces only hold test clips):

- `{split}_qa.jsonl`: for each clip, one question per fact (instrument, family, tempo class, key,
  mode, meter) and one free description, each in one of several wordings, its answer a whole
  sentence or a short one (drawn per question); each turn has its `type`.
- `{split}_segments.jsonl` + `audio/`: pieces of 2 or 3 clips of different instruments (and,
  where the split allows, different tempo classes or keys) joined end to end, each clip cut to a
  random window of 40-100% of its length (so a section's length does not give its boundaries
  away); the sections' boundaries are the exact sample counts of the joined windows. Each section's text is a short
  description (`grand piano, slow, 62 BPM, D minor, 3/4.`) and carries that clip's facts; the
  item's `text` names the instruments in order.
- `{split}_playlist.jsonl`: sets of 2 to 4 clips and one sentence about the set (its instruments
  and its prevailing tempo class), with `instruments` and `tempo_class` fields to score.
- `captions.txt`: every text of the train split's task items (questions, answers, section and
  playlist captions), for building a SentencePiece vocabulary that covers them.

Deterministic from the seed and the corpus manifests; resumable (a joined piece on disk is kept).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.data.manifest import read_manifest, write_jsonl
from mmtok.data.templates import instruction_texts
from mmtok.demo.captions import GM_INSTRUMENTS, TEMPO_WORDS

SPLITS = ("train", "valid", "test")
TASK_DATA_VERSION = 2  # bumped when the same corpus and seed would make different task data (stage fingerprints)

# Question wordings per fact, and answers (short, sentence) as format strings of the facts. A family
# answer names the instrument first: the instrument is what the audio shows (and what captions
# teach), the family then follows from it as text.
QUESTIONS = {
    "instrument": (("What instrument is playing?", "Which instrument plays this piece?",
                    "Name the instrument you hear.", "What is the instrument in this recording?"),
                   ("{Inst}.", "The instrument is {a_inst}.", "It is played on {a_inst}.")),
    "family": (("Which family of instruments is this?", "What instrument family does the sound belong to?",
                "Which group of instruments plays?"),
               ("{Inst}, of the {family} family.", "It is {a_inst}, which belongs to the {family} family.",
                "The instrument is {a_inst}, from the {family} family.")),
    "tempo_class": (("How fast is the music?", "What is the tempo?", "Is this slow or fast?"),
                    ("{Tempo}.", "The tempo is {tempo}, about {bpm} BPM.", "It is {tempo}, around {bpm} BPM.")),
    "key": (("What key is it in?", "In which key is this piece?", "What is the key of the music?"),
            ("{key} {mode}.", "It is in {key} {mode}.", "The key is {key} {mode}.")),
    "mode": (("Is it in a major or a minor key?", "What is the mode?", "Major or minor?"),
             ("{Mode}.", "The mode is {mode}.", "It is in a {mode} key.")),
    "meter": (("What is the time signature?", "What meter is the music in?", "How many beats are in a bar?"),
              ("{meter}.", "It is in {meter} time.", "The meter is {meter}.")),
    "describe": (("Describe this music.", "What do you hear?", "Give a description of this clip."),
                 ("{caption}",)),
}
FACT_TYPES = ("instrument", "family", "tempo_class", "key", "mode", "meter")  # answers that are known facts


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def instrument_name(clip: dict) -> str:
    """The clip's instrument as captions name it (the first natural name of its GM program)."""
    return GM_INSTRUMENTS[clip["program"]][1][0] if clip.get("program") in GM_INSTRUMENTS else clip["instrument"].lower()


def _fields(clip: dict) -> dict:
    inst = instrument_name(clip)
    return dict(inst=inst, Inst=inst[:1].upper() + inst[1:], a_inst=_article(inst), family=clip["family"],
                tempo=clip["tempo_class"], Tempo=clip["tempo_class"][:1].upper() + clip["tempo_class"][1:],
                bpm=int(round(clip["tempo_bpm"])),
                key=clip["key"], mode=clip["mode"], Mode=clip["mode"].capitalize(), meter=clip["meter"],
                caption=clip["text"])


FACTS = ("instrument", "family", "program", "tempo_bpm", "tempo_class", "key", "mode", "meter")


def qa_item(clip: dict, rng: np.random.Generator) -> dict:
    """One qa item about a clip: a question per fact and a description, in a random order."""
    f = _fields(clip)
    turns = []
    for qtype, (questions, answers) in QUESTIONS.items():
        q = questions[int(rng.integers(len(questions)))]
        a = answers[int(rng.integers(len(answers)))].format(**f)
        turns.append({"q": q, "a": a, "type": qtype})
    turns = [turns[int(i)] for i in rng.permutation(len(turns))]
    return {"audio": clip["audio"], "task": "qa", "qa": turns, "text": turns[0]["a"], "id": f"qa_{clip['id']}",
            "split": clip["split"], "clip": clip["id"], **{k: clip[k] for k in FACTS if k in clip}}


def section_text(clip: dict) -> str:
    f = _fields(clip)
    return f"{f['inst']}, {f['tempo']}, {f['bpm']} BPM, {f['key']} {f['mode']}, {f['meter']}."


def _distinct(pool: list[dict], first: dict, used: set, rng) -> dict | None:
    """A clip of another instrument than `first`, preferring another tempo class or key too."""
    others = [c for c in pool if c["id"] not in used and c["instrument"] != first["instrument"]]
    better = [c for c in others if c["tempo_class"] != first["tempo_class"] or c["key"] != first["key"]]
    choice = better or others
    return choice[int(rng.integers(len(choice)))] if choice else None


def segments_item(clips: list[dict], audio_dir: Path, sample_rate: int,
                  windows: list[tuple[float, float]] | None = None) -> dict:
    """Join `clips` end to end into one file; sections at the exact sample boundaries. `windows`:
    per clip, the (start, length) of the part kept as shares of the clip (None: whole clips)."""
    windows = windows or [(0.0, 1.0)] * len(clips)
    cut = "".join(f"-{round(a * 100)}-{round(n * 100)}" for a, n in windows) if any(w != (0.0, 1.0) for w in windows) else ""
    name = "seg_" + "__".join(c["id"] for c in clips)[:150] + cut
    path = audio_dir / f"{name}.flac"
    wavs = []
    for c, (start, length) in zip(clips, windows):
        wav, sr = sf.read(c["audio"], dtype="float32", always_2d=True)
        if sr != sample_rate:
            raise ValueError(f"{c['audio']}: {sr} Hz, the other clips are {sample_rate} Hz")
        a = int(start * len(wav))
        wavs.append(wav[a : a + max(1, int(length * len(wav)))].mean(axis=1))
    if not path.exists():
        with atomic_path(path) as tmp:
            sf.write(tmp, np.concatenate(wavs), sample_rate, subtype="PCM_16", format="FLAC")
    segments, at = [], 0
    for c, w in zip(clips, wavs):
        segments.append({"start_s": round(at / sample_rate, 6), "end_s": round((at + len(w)) / sample_rate, 6),
                         "text": section_text(c), "clip": c["id"], **{k: c[k] for k in FACTS if k in c}})
        at += len(w)
    names = [instrument_name(c) for c in clips]
    text = f"{_NUMBERS[len(clips)].capitalize()} sections: " + ", then ".join(names) + "."
    # Relative to the manifests' directory (audio_dir's parent), as manifest readers resolve it.
    return {"audio": f"{audio_dir.name}/{path.name}", "task": "segments", "segments": segments, "text": text, "id": name,
            "split": clips[0]["split"], "duration": round(at / sample_rate, 6)}


def prevailing_tempo(clips: list[dict]) -> str:
    """The most frequent tempo class of a set (ties: the one met first)."""
    counts = Counter(c["tempo_class"] for c in clips)
    top = max(counts.values())
    return next(c["tempo_class"] for c in clips if counts[c["tempo_class"]] == top)


_PLAYLIST_TEMPLATES = (
    "A playlist of {n} pieces played on {insts}, mostly {tempo}.",
    "{N} clips: {insts}; the tempo is mostly {tempo}.",
    "A set of {n} recordings featuring {insts}, mostly at a {tempo} tempo.",
)
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def playlist_item(clips: list[dict], rng: np.random.Generator, n: int) -> dict:
    names = list(dict.fromkeys(instrument_name(c) for c in clips))
    insts = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    tempo = prevailing_tempo(clips)
    words = TEMPO_WORDS[tempo]
    word = words[0]  # the class's plain word: "mostly slow"
    template = _PLAYLIST_TEMPLATES[int(rng.integers(len(_PLAYLIST_TEMPLATES)))]
    text = template.format(n=_NUMBERS[len(clips)], N=_NUMBERS[len(clips)].capitalize(), insts=insts, tempo=word)
    return {"task": "playlist", "audios": [c["audio"] for c in clips], "text": text, "id": f"playlist_{clips[0]['split']}_{n}",
            "split": clips[0]["split"], "clips": [c["id"] for c in clips],
            "instruments": list(dict.fromkeys(c["instrument"] for c in clips)),
            "families": list(dict.fromkeys(c["family"] for c in clips)), "tempo_class": tempo}


def build_task_data(corpus: str | Path, out: str | Path, seed: int = 0, segments_per_clip: float = 0.5,
                    playlists_per_clip: float = 0.5, playlist_size: tuple[int, int] = (2, 4),
                    section_share: tuple[float, float] = (0.4, 1.0)) -> dict:
    """Write the task manifests of every split of the corpus in `corpus` to `out` (see the module
    docstring); returns counts per split and task. `section_share`: the range of each joined
    clip's kept share (a random window; (1, 1): whole clips)."""
    corpus, out = Path(corpus), Path(out)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    counts, train_text = {}, []
    for s, split in enumerate(SPLITS):
        manifest = corpus / f"{split}.jsonl"
        if not manifest.exists():
            continue
        clips = read_manifest(manifest)
        if not clips:
            continue
        rng = np.random.default_rng([seed, s, 17])
        qa = [qa_item(c, rng) for c in clips]
        sr = int(clips[0].get("sample_rate") or sf.info(clips[0]["audio"]).samplerate)
        segs = []
        for _ in range(max(1, round(len(clips) * segments_per_clip)) if len(clips) > 1 else 0):
            first = clips[int(rng.integers(len(clips)))]
            chosen, used = [first], {first["id"]}
            for _ in range(int(rng.integers(1, 3))):  # 2 or 3 sections
                nxt = _distinct(clips, chosen[-1], used, rng)
                if nxt is None:
                    break
                chosen.append(nxt)
                used.add(nxt["id"])
            if len(chosen) > 1:
                lengths = [float(rng.uniform(*section_share)) for _ in chosen]
                windows = [(round(float(rng.uniform(0, 1 - n)), 2), round(n, 2)) for n in lengths]
                item = segments_item(chosen, audio_dir, sr, windows)
                if all(i["id"] != item["id"] for i in segs):  # the same pieces drawn twice: once
                    segs.append(item)
        lo, hi = playlist_size
        lists = []
        for n in range(max(1, round(len(clips) * playlists_per_clip)) if len(clips) >= lo else 0):
            size = int(rng.integers(lo, min(hi, len(clips)) + 1))
            picked = [clips[int(i)] for i in rng.choice(len(clips), size, replace=False)]
            lists.append(playlist_item(picked, rng, n))
        write_jsonl(out / f"{split}_qa.jsonl", qa)
        write_jsonl(out / f"{split}_segments.jsonl", segs)
        write_jsonl(out / f"{split}_playlist.jsonl", lists)
        counts[split] = {"qa": len(qa), "questions": sum(len(i["qa"]) for i in qa), "segments": len(segs),
                         "playlist": len(lists)}
        if split == "train":
            train_text += [x for i in qa for t in i["qa"] for x in (t["q"], t["a"])]
            train_text += [i["text"] for i in segs] + [s_["text"] for i in segs for s_ in i["segments"]]
            train_text += [i["text"] for i in lists]
    caps = corpus / "captions.txt"
    base = caps.read_text().splitlines() if caps.exists() else instruction_texts()
    write_text_atomic(out / "captions.txt", "\n".join([*base, *dict.fromkeys(train_text)]) + "\n")
    summary = {"corpus": str(corpus), "out": str(out), "seed": seed, "splits": counts}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
