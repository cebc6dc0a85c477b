"""MusicQA (from MU-LLaMA): question-answer conversations about music clips from MusicCaps and
MagnaTagATune, as a JSON list (`PretrainMusicQA.json`, `FinetuneMusicQA.json`,
`EvalMusicQA.json`).

Each entry: {"audio_name": ..., "conversation": [{"from": "human", "value": question},
{"from": "gpt", "value": answer}, ...]}. Each human turn is paired with the gpt turn after it;
all the pairs about one audio file become one Q&A item (`qa`), in file order. The split comes
from the file name: `eval` or `test` in it is `test`, else `train`.
"""

from __future__ import annotations

from pathlib import Path

from mmtok.data.importers.common import DatasetFormatError, Row, need, read_json_records

KIND = "qa"
REQUIRED = ["audio_name", "conversation"]
FIELDS = ("audio_name", "stem")
PATTERNS = ["{audio_name}", "{stem}"]


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        found = sorted(p for p in source.glob("*.json") if "musicqa" in p.name.lower())
        if not found:
            raise FileNotFoundError(f"{source}: no *MusicQA*.json files in this directory")
        return found
    return [source]


def pairs(conversation, where: str) -> list[dict]:
    if not isinstance(conversation, list):
        raise DatasetFormatError(f"{where}: conversation must be a list of turns")
    out, question = [], None
    for i, turn in enumerate(conversation):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ("human", "gpt"):
            raise DatasetFormatError(f"{where}: conversation turn {i} must be {{\"from\": \"human\"|\"gpt\", "
                                     f"\"value\": text}}, got {str(turn)[:80]}")  # fmt: skip
        if turn["from"] == "human":
            question = turn["value"].strip()
        elif question is None:
            raise DatasetFormatError(f"{where}: conversation turn {i} is an answer without a question")
        else:
            if question and turn["value"].strip():
                out.append({"q": question, "a": turn["value"].strip()})
            question = None
    return out


def read(source: Path) -> list[Row]:
    clips: dict[tuple[str, str], dict] = {}
    for path in source_files(source):
        split = "test" if any(w in path.name.lower() for w in ("eval", "test")) else "train"
        for line, r in read_json_records(path):
            where = f"{path}:{line}"
            need(path, line, r, REQUIRED)
            name = r["audio_name"]
            if not isinstance(name, str) or not name.strip():
                raise DatasetFormatError(f"{where}: audio_name must be a non-empty string")
            c = clips.setdefault((split, name.strip()), {"where": where, "qa": []})
            c["qa"] += pairs(r["conversation"], where)
    rows = []
    for (split, name), c in clips.items():
        fields = {"task": "qa", "qa": c["qa"], "split": split, "source": "musicqa", "id": Path(name).stem}
        if c["qa"]:
            fields["text"] = c["qa"][0]["a"]
        rows.append(Row(fields, {"audio_name": name, "stem": Path(name).stem}, c["where"]))
    return rows
