"""Playlist captions: caption metrics, and set-level attributes of the whole set.

Each playlist item (`audios`, `text`) is captioned by `Captioner.playlist_codes` and scored with
the caption metrics against its `text` (and `references`). A `SetGrammar` reads set-level facts
out of a caption: the instruments it names (compared as sets with the item's `instruments`:
exact set match and mean Jaccard overlap) and the prevailing tempo class (against the item's
`tempo_class`), each beside its majority baseline.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mmtok.data.manifest import captions_of
from mmtok.eval.caption_metrics import caption_metrics
from mmtok.eval.task_items import encode_items, task_items


@dataclass(frozen=True)
class SetGrammar:
    parse: Callable[[str], Mapping]  # caption -> {"instruments": set of names, "tempo_class": str}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def set_attribute_scores(parsed: list[Mapping], items: list[Mapping]) -> dict:
    out = {}
    pairs = [(set(map(str.lower, p.get("instruments") or ())), {s.lower() for s in i["instruments"]})
             for p, i in zip(parsed, items) if i.get("instruments")]
    if pairs:
        majority = Counter(frozenset(t) for _, t in pairs).most_common(1)[0][0]
        out["instruments_exact"] = {"accuracy": sum(p == t for p, t in pairs) / len(pairs),
                                    "majority_baseline": sum(majority == t for _, t in pairs) / len(pairs),
                                    "n": len(pairs)}
        out["instruments_jaccard"] = {"accuracy": sum(_jaccard(p, t) for p, t in pairs) / len(pairs),
                                      "majority_baseline": sum(_jaccard(set(majority), t) for _, t in pairs) / len(pairs),
                                      "n": len(pairs)}
    tempo = [(p.get("tempo_class"), i["tempo_class"]) for p, i in zip(parsed, items) if i.get("tempo_class")]
    if tempo:
        majority = Counter(t for _, t in tempo).most_common(1)[0][0]
        out["tempo_class"] = {"accuracy": sum(p == t for p, t in tempo) / len(tempo),
                              "majority_baseline": sum(t == majority for _, t in tempo) / len(tempo),
                              "majority_class": majority, "n": len(tempo)}
    return out


def evaluate_playlists(captioner, manifest, grammar: SetGrammar | None = None, limit: int | None = None,
                       meteor: bool = True) -> dict:
    items = task_items(manifest, "playlist", limit)
    t0 = time.perf_counter()

    def encode(item):
        frames = captioner.playlist_frames(len(item["audios"]))
        return [captioner.encode(a, None, frames) for a in item["audios"]]

    sets, kept, skipped = encode_items(items, encode, manifest, "playlist")
    captions = captioner.playlist_codes(sets)
    refs = [captions_of(i["text"], i.get("references")) for i in kept]
    report = {"manifest": str(manifest), "n_playlists": len(kept),
              "caption_metrics": caption_metrics(captions, refs, meteor=meteor).corpus}
    if grammar is not None:
        report["set_attributes"] = set_attribute_scores([grammar.parse(c) for c in captions], kept)
    report["timing_s"] = {"caption": round(time.perf_counter() - t0, 2)}
    report["samples"] = [{"audios": i["audios"], "reference": r[0], "caption": c} for i, r, c in zip(kept, refs, captions)]
    report["skipped"] = skipped
    return report
