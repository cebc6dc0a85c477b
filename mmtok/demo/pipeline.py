"""The main job end to end: real music -> codec -> task data -> tokenizer -> shards -> training -> captions
and the other tasks -> report.

Every stage writes under one output directory (default `runs/demo/`), shows progress, is skipped
when its output is complete (a marker records the parameters it was made with; change them and
the stage runs again), and can be run alone (`mmtok demo --stage train`). The same path with a
bigger corpus and config is what runs on a cluster.

    OUT/corpus/      demo corpus: audio/, {train,valid,test}.jsonl, captions.txt
    OUT/codec/       fitted codec (only when pretrained EnCodec weights are not available)
    OUT/tasks/       the other tasks' data from the corpus's facts: {split}_{qa,segments,playlist}.jsonl,
                     audio/ (joined multi-section pieces), captions.txt, train_mixed.jsonl (none with --no-tasks)
    OUT/tokenizer/   the tokenizer the model is trained with
    OUT/shards/      WebDataset shards: train-*.tar, valid-*.tar, test-*.tar, shards.jsonl
    OUT/train/       checkpoints/ (the final one is what `mmtok caption/eval --checkpoint` take),
                     metrics.jsonl, wandb/ (offline run files)
    OUT/eval/        eval.json, eval.md: captions of the unseen test clips and their scores;
                     ood_m30/m20/m10.*: the held-out collections; tasks.json, tasks.md: every task
    OUT/report/      results.md, results.json, loss_curves.png, generated.wav
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmtok.atomic import write_text_atomic
from mmtok.codec.audio import find_audio
from mmtok.codec.fit import PRESETS as CODEC_PRESETS
from mmtok.codec.fit import fit_codec
from mmtok.config import load_config
from mmtok.data.manifest import read_manifest, write_jsonl
from mmtok.data.shard import shard_manifest
from mmtok.demo.attributes import DEMO_GRAMMAR, DEMO_TASK_GRAMMARS
from mmtok.demo.corpus import CAPTIONS_PER_CLIP, CORPUS_VERSION, OOD, build_demo_corpus, corpus_size, ood_conditions
from mmtok.demo.report import write_demo_report
from mmtok.demo.tasks import TASK_DATA_VERSION, build_task_data
from mmtok.eval.evaluate import evaluate
from mmtok.eval.report import write_report
from mmtok.eval.tasks import evaluate_tasks, write_tasks_report
from mmtok.generate.captioner import Captioner
from mmtok.tokenizer.codec import load_codec, pretrained_available
from mmtok.tokenizer.loudness import LoudnessRule
from mmtok.tokenizer.multimodal import MultimodalTokenizer
from mmtok.tokenizer.semantic import fit_spectral
from mmtok.training.evals import default_evals
from mmtok.training.loop import train

# "tasks" comes after "codec" (which does not depend on it), so switching the tasks on or off
# never refits the codec.
STAGES = ("corpus", "codec", "tasks", "tokenizer", "shards", "train", "eval", "report")
# The task data's size per train clip (mmtok.demo.tasks.build_task_data): with the preset's
# mix_qa 0.25, about 60% of the documents of an epoch are single-clip caption items. Joined pieces
# keep a random 40-100% window of each clip, so sections differ in length.
TASK_DATA = {"segments_per_clip": 0.25, "playlists_per_clip": 0.25, "section_share": (0.4, 1.0)}
TASK_EVAL_LIMIT = 100  # test items per task (retrieval: clips) the demo's task evaluation scores
@dataclass
class DemoConfig:
    out: str = "runs/demo"  # everything lands under this directory
    size: str = "default"  # demo corpus size: smoke (minutes, for CI) | default | large (hours)
    pieces: int | None = None  # replaces the size's number of pieces (the unit of the split)
    clips_per_piece: int | None = None  # replaces the size's clips per piece (8 at `default`): more
    #   renderings of the same pieces (other instrument, tempo, key, excerpt) = more training clips
    ood_pieces: int | None = None  # replaces the size's number of held-out pieces (the out-of-distribution test)
    captions_per_clip: int = CAPTIONS_PER_CLIP  # wordings of each clip's facts: `text` + `references`
    #   (training draws one each time it uses the clip; evaluation scores against all)
    seed: int = 0  # corpus plan, codec fit, training: the whole run is deterministic from it
    codec: str = "auto"  # auto: pretrained encodec_24khz if its weights are on disk, else fit one; or a name/path
    codec_preset: str = "small"  # `mmtok codec fit` preset when fitting
    codec_minutes: float = 60.0  # wall-clock budget of the codec fit, in total over resumed runs (the
    #   biggest lever measured: 12 -> 24 min lifted the captioner's family accuracy 0.48 -> 0.65,
    #   40 -> 60 min 0.76-0.77 -> 0.80-0.82; docs/results.md)
    bandwidth: float | None = None  # codec bandwidth in kbps (None: the codec's default)
    n_codebooks: int = 2  # codebooks per frame the model sees (the token budget's main lever)
    vocab_size: int = 600  # SentencePiece pieces (captions use a small vocabulary)
    loudness: str = "lufs:-23"  # the tokenizer's loudness rule (mmtok/tokenizer/loudness.py)
    config: str = "demo_small"  # training preset name (shipped with the package) or YAML path
    train_minutes: float = 30.0  # wall-clock cap on training; the run checkpoints and stops there
    train_steps: int | None = None  # length of the LR schedule (train.max_steps). None: the config's
    #   (demo_small: 2,550 steps, ~30 min on 2 cores with bf16 autocast; docs/results.md). A machine
    #   without bf16 in hardware runs ~25% fewer steps per minute: the 30-minute cap then stops the
    #   run before the cosine ends, so lower this or raise train_minutes (benchmarks/train_step.py
    #   measures a machine's rate)
    steps_per_minute: float | None = None  # or size the schedule to the cap: train steps =
    #   train_minutes x this rate (None or 0: not used)
    tasks: bool = True  # also train question answering, time-stamped and playlist captions beside
    #   captions and text -> music (the mix: the preset's data.templates.mix_*), and report on them.
    #   On the same codec and budget the mix leaves the captions' family within run-to-run spread
    #   (0.50-0.56 in five mix runs against 0.58 captions only on the test split, 0.51-0.57 against
    #   0.52 on the held-out collections; 2026-12-01, docs/results.md). False: captions and text ->
    #   music only, and no task stage, shards or evaluation
    semantic: bool = False  # add the semantic stream (k-means ids of chroma + onset features, one per
    #   frame, with the codes; mmtok/tokenizer/semantic.py), fitted on the train audio
    semantic_clusters: int = 256  # its k-means size (the vocabulary's semantic block)
    semantic_placement: str = "prefix"  # its ids all before the codes, or beside each frame's ("frame")
    overrides: list[str] = field(default_factory=list)  # extra dotted overrides for training
    generate_prompt: str = "a slow piano piece in D minor, in 3/4"  # text for the generated sample
    generate_seconds: float = 4.0  # length of the generated sample


class Stage:
    """Completion marker for one stage: OUT/.stages/<name>.json holds the parameters it ran with."""

    def __init__(self, cfg: DemoConfig, name: str, params: dict):
        self.name = name
        self.params = params
        self.marker = Path(cfg.out) / ".stages" / f"{name}.json"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def done(self) -> bool:
        if not self.marker.exists():
            return False
        return json.loads(self.marker.read_text()).get("fingerprint") == self.fingerprint

    def complete(self, result: dict) -> None:
        record = {"fingerprint": self.fingerprint, "params": self.params, "result": result}
        write_text_atomic(self.marker, json.dumps(record, indent=2, default=str))

    def result(self) -> dict:
        return json.loads(self.marker.read_text())["result"]


class DemoPipeline:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)

    def path(self, *parts) -> Path:
        return self.out.joinpath(*parts)

    # ---- stages, in order -------------------------------------------------------------------------
    def corpus(self) -> dict:
        c = self.cfg
        size = corpus_size(c.size, c.pieces, c.clips_per_piece, c.ood_pieces)
        return build_demo_corpus(self.path("corpus"), size=size, seed=c.seed, captions_per_clip=c.captions_per_clip)

    def codec(self) -> dict:
        """Pretrained EnCodec when its weights are available, else a codec fitted on the train audio."""
        spec = self.cfg.codec
        if spec == "auto":
            spec = "encodec_24khz" if pretrained_available("encodec_24khz") else "fit"
        if spec != "fit":
            return {"codec": spec}
        fit_codec(self.path("corpus", "train.jsonl"), self.path("codec"), minutes=self.cfg.codec_minutes,
                  preset=self.cfg.codec_preset, seed=self.cfg.seed)
        # Not its path: that was relative to this process's working directory, and the run
        # directory may be moved or reached from another one later. The tokenizer finds it in OUT.
        return {"codec": "fit"}

    def tasks(self) -> dict:
        """Q&A, joined multi-section pieces and playlists from the corpus's facts, per split."""
        if not self.cfg.tasks:
            return {"tasks": False}
        return build_task_data(self.path("corpus"), self.path("tasks"), seed=self.cfg.seed, **TASK_DATA)

    def tokenizer(self) -> dict:
        codec = self._result("codec")["codec"]
        codec = str(self.path("codec")) if codec == "fit" else codec
        # The tasks' captions.txt holds the corpus's and every text of the train task items.
        texts = self.path("tasks" if self.cfg.tasks else "corpus", "captions.txt")
        semantic = None
        if self.cfg.semantic:  # fitted on the train clips only, as the codec is
            frame_rate = load_codec(codec, self.cfg.bandwidth).frame_rate
            semantic = fit_spectral(find_audio(self.path("corpus", "train.jsonl")), self.cfg.semantic_clusters,
                                    frame_rate=frame_rate, seed=self.cfg.seed)
        tok = MultimodalTokenizer.build(
            text_files=[texts], codec=codec, out=self.path("tokenizer"),
            bandwidth=self.cfg.bandwidth, vocab_size=self.cfg.vocab_size, n_codebooks=self.cfg.n_codebooks,
            overwrite=True, loudness=self.cfg.loudness, semantic=semantic,
            semantic_placement=self.cfg.semantic_placement,
        )
        return {"tokenizer": str(self.path("tokenizer")), "vocab_size": len(tok), "layout": tok.layout.hash,
                "frame_rate": tok.frame_rate, "n_codebooks": tok.layout.n_codebooks,
                "audio_tokens_per_second": tok.audio_tokens_per_second,
                "semantic": tok.semantic.fit_info if tok.semantic is not None else None}

    def shards(self) -> dict:
        manifests = {split: self.path("corpus", f"{split}.jsonl") for split in ("train", "valid", "test")}
        if self.cfg.tasks:  # validation and test stay the caption clips: their losses compare across runs
            manifests["train"] = self.mixed_train_manifest()
        summaries = {split: shard_manifest(m, self.path("tokenizer"), self.path("shards"), split=split)
                     for split, m in manifests.items()}
        for split, summary in summaries.items():  # the demo makes its own data: any skip is a fault to see
            if summary["skipped"]:
                print(f"[demo] shards: {summary['skipped']} {split} item(s) skipped, reasons in "
                      f"{self.path('shards', f'{split}-report.jsonl')}", flush=True)
        return summaries

    def mixed_train_manifest(self) -> Path:
        """The train caption items and the train task items in one seeded order, so every shard
        holds a mix of the tasks."""
        items = read_manifest(self.path("corpus", "train.jsonl"))
        for task in ("qa", "segments", "playlist"):
            items += read_manifest(self.path("tasks", f"train_{task}.jsonl"))
        order = np.random.default_rng([self.cfg.seed, 23]).permutation(len(items))
        path = self.path("tasks", "train_mixed.jsonl")
        write_jsonl(path, [items[int(i)] for i in order])
        return path

    def train(self) -> dict:
        cfg = load_config(self.cfg.config, self.train_overrides())
        return train(cfg, eval_callbacks=default_evals(cfg))

    def train_overrides(self) -> list[str]:
        shards = self.path("shards", "shards.jsonl")
        return [
            f"tokenizer={self.path('tokenizer')}",
            f"data.train_shards={shards}#train",
            f"data.valid_shards={shards}#valid",
            f"train.out_dir={self.path('train')}",
            f"train.max_minutes={self.cfg.train_minutes}",
            *([f"train.max_steps={steps}"] if (steps := self.train_steps()) else []),
            f"train.seed={self.cfg.seed}",
            "wandb.mode=offline",
            *self.cfg.overrides,  # last: an explicit train.max_steps=N wins
        ]

    def train_steps(self) -> int | None:
        """The schedule length the demo sets (None: keep the config's train.max_steps)."""
        if self.cfg.steps_per_minute:
            return round(self.cfg.train_minutes * self.cfg.steps_per_minute)
        return self.cfg.train_steps

    def validate(self) -> None:
        """Check the whole configuration before the first stage: a typo in a training override
        should not surface after an hour of corpus, codec and shards."""
        c = self.cfg
        corpus_size(c.size, c.pieces, c.clips_per_piece, c.ood_pieces)
        for name in ("captions_per_clip", "n_codebooks", "vocab_size"):
            if getattr(c, name) <= 0:
                raise ValueError(f"demo {name} must be positive, got {getattr(c, name)}")
        for name in ("codec_minutes", "train_minutes", "generate_seconds"):
            if getattr(c, name) < 0:
                raise ValueError(f"demo {name} must be >= 0, got {getattr(c, name)}")
        if c.codec_preset not in CODEC_PRESETS:
            raise ValueError(f"codec preset {c.codec_preset!r} is not one of {', '.join(sorted(CODEC_PRESETS))}")
        LoudnessRule.parse(c.loudness)
        load_config(c.config, self.train_overrides())  # ConfigError names the key

    def eval(self) -> dict:
        """The unseen test pieces (with held-out perplexity), then the held-out collections at
        each level: eval/eval.{json,md} and eval/ood_m30.{json,md}, ..."""
        captioner = Captioner.from_checkpoint(self.path("train"))
        report = evaluate(captioner, self.path("corpus", "test.jsonl"),
                          shards=f"{self.path('shards', 'shards.jsonl')}#test", run_config=captioner.run_config,
                          attributes=DEMO_GRAMMAR)
        json_path, md_path = write_report(self.path("eval"), report)
        written = {"json": str(json_path), "markdown": str(md_path)}
        for _, suffix in ood_conditions():
            manifest = self.path("corpus", f"{OOD}{suffix}.jsonl")
            if manifest.is_file() and manifest.stat().st_size:  # corpora without held-out pieces have none
                ood = evaluate(captioner, manifest, attributes=DEMO_GRAMMAR)
                written[f"{OOD}{suffix}"] = str(write_report(self.path("eval"), ood, stem=f"{OOD}{suffix}")[0])
        if self.cfg.tasks:
            test = self.path("corpus", "test.jsonl")
            tasks = evaluate_tasks(captioner, qa=self.path("tasks", "test_qa.jsonl"),
                                   segments=self.path("tasks", "test_segments.jsonl"),
                                   playlist=self.path("tasks", "test_playlist.jsonl"), retrieval=test, music=test,
                                   grammars=DEMO_TASK_GRAMMARS, limit=TASK_EVAL_LIMIT)
            written["tasks"] = str(write_tasks_report(self.path("eval"), tasks)[0])
        return written

    def report(self) -> dict:
        return write_demo_report(self)

    def corpus_knobs(self) -> dict:
        """The corpus options set away from their old defaults (the corpus fingerprint and the
        report's heading). Only those, so that runs made before the knobs existed stay complete."""
        c = self.cfg
        custom = {k: v for k, v in (("pieces", c.pieces), ("clips_per_piece", c.clips_per_piece),
                                    ("ood_pieces", c.ood_pieces)) if v is not None}
        return custom | ({"captions_per_clip": c.captions_per_clip} if c.captions_per_clip != 1 else {})

    # ---- driver -----------------------------------------------------------------------------------
    def stage_params(self, name: str) -> dict:
        c = self.cfg
        params = {
            "corpus": {"size": c.size, "seed": c.seed, "version": CORPUS_VERSION} | self.corpus_knobs(),
            "codec": {"codec": c.codec, "preset": c.codec_preset, "minutes": c.codec_minutes, "seed": c.seed},
            "tasks": {"tasks": c.tasks, "seed": c.seed, **TASK_DATA}
                     | ({"version": TASK_DATA_VERSION} if c.tasks else {}),  # captions-only runs keep theirs
            "tokenizer": {"bandwidth": c.bandwidth, "n_codebooks": c.n_codebooks, "vocab_size": c.vocab_size,
                          "loudness": c.loudness}
                         | ({"semantic_clusters": c.semantic_clusters, "semantic_placement": c.semantic_placement}
                            if c.semantic else {}),
            "shards": {},
            "train": {"config": c.config, "overrides": self.train_overrides()},
            "eval": {},
            "report": {"prompt": c.generate_prompt, "seconds": c.generate_seconds},
        }[name]
        # A stage is only as fresh as what it was made from: chain the earlier stages' parameters.
        before = STAGES[: STAGES.index(name)]
        return {"own": params, "upstream": [self.stage_params(s)["own"] for s in before]}

    def _result(self, name: str) -> dict:
        stage = Stage(self.cfg, name, self.stage_params(name))
        if not stage.done():
            raise RuntimeError(f"stage {name!r} has not completed in {self.out}: run `mmtok demo --stage {name}` first")
        return stage.result()

    def run(self, stages=STAGES, force: bool = False) -> None:
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        self.validate()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "demo_config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        for name in (s for s in STAGES if s in stages):
            stage = Stage(self.cfg, name, self.stage_params(name))
            if stage.done() and not force:
                print(f"[demo] {name}: already complete, skipped", flush=True)
                continue
            print(f"[demo] {name}: running", flush=True)
            t0 = time.perf_counter()
            result = getattr(self, name)()
            stage.complete(result if isinstance(result, dict) else {"result": result})
            print(f"[demo] {name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
