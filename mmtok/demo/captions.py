"""Caption wording and its inverse: clip facts -> varied English, and English -> attributes.

The demo corpus writes a caption per clip with `describe(facts, rng)`; the evaluation scores a
generated caption with `parse_caption(text)`, which recovers the attributes the wording encodes.
Both sides share the vocabulary below (instrument names, tempo words, key spellings), so what one
writes the other can read. The attribute names and their classes are constants so that majority
baselines and confusion matrices can be computed without a corpus at hand.
"""

from __future__ import annotations

import re

import numpy as np

# ---- attributes and their classes ---------------------------------------------------------------
ATTRIBUTES = ("family", "tempo_class", "key", "mode", "meter")  # what parse_caption can recover

# General MIDI families (program // 8 picks one of 16; we play a subset, see GM_INSTRUMENTS).
GM_FAMILIES = (
    "piano", "mallets", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip
FAMILIES = GM_FAMILIES  # every class `family` can take

# Instruments the demo corpus plays: GM program -> (manifest name, caption names). The manifest
# name is the GM name; captions use one of the natural names, so the parser knows them all.
GM_INSTRUMENTS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("Acoustic Grand Piano", ("grand piano", "acoustic piano", "piano")),
    4: ("Electric Piano 1", ("electric piano", "Rhodes-style electric piano")),
    6: ("Harpsichord", ("harpsichord",)),
    8: ("Celesta", ("celesta",)),
    11: ("Vibraphone", ("vibraphone", "vibes")),
    12: ("Marimba", ("marimba",)),
    13: ("Xylophone", ("xylophone",)),
    16: ("Drawbar Organ", ("drawbar organ", "electric organ")),
    19: ("Church Organ", ("church organ", "pipe organ")),
    21: ("Accordion", ("accordion",)),
    24: ("Acoustic Guitar (nylon)", ("nylon-string guitar", "classical guitar")),
    25: ("Acoustic Guitar (steel)", ("steel-string guitar", "acoustic guitar")),
    26: ("Electric Guitar (jazz)", ("jazz guitar", "electric jazz guitar")),
    32: ("Acoustic Bass", ("acoustic bass", "upright bass")),
    40: ("Violin", ("violin",)),
    41: ("Viola", ("viola",)),
    42: ("Cello", ("cello", "violoncello")),
    46: ("Orchestral Harp", ("harp", "concert harp")),
    48: ("String Ensemble 1", ("string ensemble", "string section")),
    52: ("Choir Aahs", ("choir", "choir voices")),
    56: ("Trumpet", ("trumpet",)),
    57: ("Trombone", ("trombone",)),
    60: ("French Horn", ("French horn", "horn")),
    61: ("Brass Section", ("brass section", "brass ensemble")),
    65: ("Alto Sax", ("alto saxophone", "alto sax")),
    68: ("Oboe", ("oboe",)),
    70: ("Bassoon", ("bassoon",)),
    71: ("Clarinet", ("clarinet",)),
    73: ("Flute", ("flute",)),
    74: ("Recorder", ("recorder",)),
    75: ("Pan Flute", ("pan flute", "panpipes")),
    80: ("Lead 1 (square)", ("square-wave synth lead", "square lead synth")),
    81: ("Lead 2 (sawtooth)", ("sawtooth synth lead", "saw lead synth")),
    89: ("Pad 2 (warm)", ("warm synth pad", "warm pad synth")),
}


def family_of(program: int) -> str:
    """GM family of a program (0-127): programs come in 16 families of 8."""
    if not 0 <= program < 128:
        raise ValueError(f"GM program must be in [0, 128), got {program}")
    return GM_FAMILIES[program // 8]


# Tempo classes: fixed BPM bins (quarter-note beats), lower bound inclusive.
#   slow < 76 <= moderate < 108 <= fast < 144 <= very fast
TEMPO_CLASSES = ("slow", "moderate", "fast", "very fast")
TEMPO_BINS = (76, 108, 144)  # class boundaries in BPM
TEMPO_RANGE = (50, 184)  # the demo corpus draws tempos from [50, 184) BPM
TEMPO_WORDS = {  # caption words per class; each is unambiguous (longest match wins when parsing)
    "slow": ("slow", "unhurried", "leisurely", "adagio"),
    "moderate": ("moderate", "medium-tempo", "moderately paced", "andante"),
    "fast": ("fast", "lively", "quick", "allegro"),
    "very fast": ("very fast", "brisk", "rapid", "presto"),
}


def tempo_class(bpm: float) -> str:
    return TEMPO_CLASSES[int(np.searchsorted(TEMPO_BINS, bpm, side="right"))]


MODES = ("major", "minor")
# One spelling per pitch class (the corpus normalises music21's spellings to these).
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_ENHARMONIC = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb",
               "Cb": "B", "B#": "C", "E#": "F", "Fb": "E"}  # fmt: skip
METERS = ("2/2", "2/4", "3/2", "3/4", "3/8", "4/4", "6/8", "9/8", "12/8")  # common; others occur


def normalize_key(name: str) -> str:
    """'E-', 'e-flat', 'D#' ... -> one of KEYS."""
    n = name.strip().replace("-flat", "b").replace(" flat", "b").replace("-sharp", "#")
    n = n.replace(" sharp", "#").replace("♭", "b").replace("♯", "#").replace("-", "b")
    n = n[:1].upper() + n[1:]
    n = _ENHARMONIC.get(n, n)
    if n not in KEYS:
        raise ValueError(f"not a key name: {name!r}")
    return n


# ---- facts -> caption ---------------------------------------------------------------------------
# Sentence templates. Every template names instrument, tempo (word and BPM), key + mode and meter;
# {source} is "" or a composer/collection phrase. Wording varies so the model learns meaning, not
# one sentence.
_TEMPLATES = (
    "{A_tempo} {piece}{source} played on {inst}, {bpm} BPM, in {key} {mode}, {meter} time.",
    "{Inst} plays {a_tempo} {piece}{source} in {key} {mode} at {bpm} BPM, in {meter}.",
    "Solo {inst} performing {a_tempo} {piece}{source}; {key} {mode}, {meter} meter, {bpm} BPM.",
    "{A_piece}{source} rendered on {inst} at {a_tempo} {bpm} BPM, in {meter} and {key} {mode}.",
    "This clip features {inst} in {key} {mode}: {a_tempo} {piece}{source} in {meter} at {bpm} BPM.",
    "{Inst}, {tempo_word}, {bpm} BPM, {key} {mode}, {meter} time: {a_piece}{source}.",
    "A recording of {a_piece}{source} on {inst}. The tempo is {tempo_word} ({bpm} BPM), the key "
    "is {key} {mode} and the meter is {meter}.",
)
_PIECE_WORDS = {  # what to call the music, by collection kind
    "chorale": ("chorale", "hymn", "chorale harmonisation"),
    "folk": ("folk tune", "folk melody", "traditional tune"),
    "renaissance": ("motet", "renaissance piece", "polyphonic piece"),
    "classical": ("classical piece", "passage", "excerpt"),
}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def describe(facts: dict, rng: np.random.Generator) -> str:
    """One caption for a clip's facts (instrument, tempo_bpm, key, mode, meter, composer, ...)."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    inst = pick(GM_INSTRUMENTS[facts["program"]][1]) if facts["program"] in GM_INSTRUMENTS else (
        facts["instrument"].lower()
    )
    tempo_word = pick(TEMPO_WORDS[tempo_class(facts["tempo_bpm"])])
    piece = pick(_PIECE_WORDS.get(facts.get("kind", ""), ("piece", "excerpt")))
    if facts.get("composer"):
        source = pick((" by {c}", " composed by {c}", " from {c}")).format(c=facts["composer"])
    elif facts.get("collection"):
        name = facts["collection"]  # "Essen folk song collection" takes "the", "O'Neill's ..." not
        source = pick((" from {c}", " out of {c}")).format(c=name if "'s " in name else f"the {name}")
    else:
        source = ""
    a_tempo = f"{_article(tempo_word)} {tempo_word}"
    fields = dict(
        inst=inst, Inst=inst[:1].upper() + inst[1:], tempo_word=tempo_word, a_tempo=a_tempo,
        A_tempo=a_tempo[:1].upper() + a_tempo[1:], piece=piece, a_piece=f"{_article(piece)} {piece}",
        A_piece=f"{_article(piece).capitalize()} {piece}", source=source,
        bpm=int(round(facts["tempo_bpm"])), key=facts["key"], mode=facts["mode"], meter=facts["meter"],
    )  # fmt: skip
    return pick(_TEMPLATES).format(**fields)


# ---- caption -> attributes ----------------------------------------------------------------------
def _alternation(words) -> str:
    # Longest first, so "very fast" wins over "fast" and "pipe organ" over "organ".
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_NAME_TO_FAMILY = {n.lower(): family_of(p) for p, (_, ns) in GM_INSTRUMENTS.items() for n in ns}
_NAME_TO_FAMILY.update({gm.lower(): family_of(p) for p, (gm, _) in GM_INSTRUMENTS.items()})
_INSTRUMENT_RE = re.compile(rf"\b({_alternation(_NAME_TO_FAMILY)})\b", re.I)
_WORD_TO_TEMPO = {w: c for c, ws in TEMPO_WORDS.items() for w in ws}
_TEMPO_RE = re.compile(rf"\b({_alternation(_WORD_TO_TEMPO)})\b", re.I)
_BPM_RE = re.compile(r"\b(\d{2,3})\s*(?:BPM|bpm|beats per minute)")
_KEY_RE = re.compile(r"\b([A-G](?:#|b|♯|♭|-flat|-sharp| flat| sharp)?)\s+(major|minor)\b")
_METER_RE = re.compile(r"\b(\d{1,2}/\d{1,2})\b")


def parse_caption(text: str) -> dict:
    """Attributes a caption states: family, tempo_class, tempo_bpm, key, mode, meter.

    Only the attributes found are returned (an unparseable caption gives {}). The first mention
    wins. A tempo word sets tempo_class; without one, a BPM number does.
    """
    out: dict = {}
    if m := _INSTRUMENT_RE.search(text):
        out["family"] = _NAME_TO_FAMILY[m.group(1).lower()]
    if m := _BPM_RE.search(text):
        out["tempo_bpm"] = int(m.group(1))
    if m := _TEMPO_RE.search(text):
        out["tempo_class"] = _WORD_TO_TEMPO[m.group(1).lower()]
    elif "tempo_bpm" in out:
        out["tempo_class"] = tempo_class(out["tempo_bpm"])
    if m := _KEY_RE.search(text):
        try:
            out["key"] = normalize_key(m.group(1))
        except ValueError:
            pass
        out["mode"] = m.group(2)
    if m := _METER_RE.search(text):
        out["meter"] = m.group(1)
    return out
