"""The tasks beyond captioning, end to end on real rendered music: question answering,
time-stamped captions, playlist captions, retrieval, and text -> music in one report.

    real clips (2 s excerpts) -> a small demo-style corpus -> mmtok.demo.tasks builders
      -> one mixed train manifest -> shards -> packed batches -> a few training steps
      -> `mmtok ask`, `mmtok caption --timestamps / --playlist`, `mmtok retrieve`, `mmtok eval-tasks`
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.cli import main
from mmtok.data.manifest import ManifestError, read_manifest
from mmtok.data.tasks import format_segments, parse_segments
from mmtok.data.templates import (
    TemplateConfig,
    audio_token_cost,
    crop_codes,
    make_document,
    qa_document,
    qa_prompt_ids,
    task_document,
)
from mmtok.eval.retrieval import random_baseline, retrieval_metrics
from mmtok.eval.segments import segment_metrics, trivial_baseline
from mmtok.tokenizer.layout import (
    ORIGINAL_SPECIALS,
    SEP,
    TASK_PLAYLIST,
    TASK_QA,
    TASK_SEGMENTS,
    LayoutMismatchError,
)
from tests.fixtures.checkpoint import clip_records

SECONDS = 2.0  # each fixture clip is cut to its first 2 s, so 2 or 3 joined ones fit a 768-id row
STEPS = 24


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def task_corpus(real_audio_files, tmp_path_factory) -> Path:
    """A demo-style corpus directory of the six real clips (2 s each): train 4, test 2."""
    out = tmp_path_factory.mktemp("task_corpus")
    (out / "audio").mkdir()
    rows = []
    for n, rec in enumerate(clip_records(real_audio_files)):
        wav, sr = sf.read(rec["audio"], dtype="float32")
        path = out / "audio" / f"clip{n}.flac"
        sf.write(path, wav[: int(SECONDS * sr)], sr, format="FLAC")
        rows.append({**rec, "audio": str(path), "id": f"clip{n}", "split": "train" if n < 4 else "test",
                     "sample_rate": sr})
    for split in ("train", "test"):
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == split))
    return out


@pytest.fixture(scope="module")
def task_data(task_corpus, tmp_path_factory) -> Path:
    from mmtok.demo.tasks import build_task_data

    out = tmp_path_factory.mktemp("task_data")
    build_task_data(task_corpus, out, seed=0, segments_per_clip=1.0, playlists_per_clip=1.0)
    return out


@pytest.fixture(scope="module")
def task_shards(task_data, task_corpus, tokenizer_dir, tmp_path_factory) -> Path:
    """One train manifest of every task (caption items too), sharded."""
    from mmtok.data.shard import ShardConfig, shard_manifest

    out = tmp_path_factory.mktemp("task_shards")
    from mmtok.data.manifest import write_jsonl

    items = read_manifest(task_corpus / "train.jsonl")  # read: relative audio paths resolved
    items += [i for t in ("qa", "segments", "playlist") for i in read_manifest(task_data / f"train_{t}.jsonl")]
    mixed = out / "train.jsonl"
    write_jsonl(mixed, items)
    summary = shard_manifest(mixed, tokenizer_dir, out / "shards", split="train", cfg=ShardConfig(max_samples=4),
                             progress=False)
    assert summary["skipped"] == 0
    return out / "shards"


@pytest.fixture(scope="module")
def task_run(task_shards, tokenizer_dir, tmp_path_factory) -> Path:
    from mmtok.config import load_config
    from mmtok.training.loop import train

    out = tmp_path_factory.mktemp("task_run") / "tiny"
    cfg = load_config("tiny", [
        f"tokenizer={tokenizer_dir}", f"data.train_shards={task_shards / 'shards.jsonl'}#train", "data.workers=0",
        "data.shuffle_buffer=8", "model.max_seq_len=768", f"train.out_dir={out}", f"train.max_steps={STEPS}",
        f"train.checkpoint_interval={STEPS}", "train.eval_interval=0", "train.log_interval=8",
        "wandb.mode=disabled", "model.attention=sdpa",
    ])
    train(cfg)
    return out


# ---- data -----------------------------------------------------------------------------------------
def test_task_builders_are_deterministic_exact_and_keep_splits(task_corpus, task_data, tmp_path):
    from mmtok.demo.attributes import DEMO_QA_GRAMMAR
    from mmtok.demo.tasks import FACT_TYPES, build_task_data
    from mmtok.eval.attributes import attribute_accuracy
    from mmtok.eval.qa import on_topic

    again = tmp_path / "again"
    build_task_data(task_corpus, again, seed=0, segments_per_clip=1.0, playlists_per_clip=1.0)
    for split in ("train", "test"):
        for task in ("qa", "segments", "playlist"):
            a = (task_data / f"{split}_{task}.jsonl").read_text()
            assert a and a.replace(str(task_data), "X") == (again / f"{split}_{task}.jsonl").read_text().replace(
                str(again), "X")
    clips = {r["id"]: r for s in ("train", "test") for r in read_manifest(task_corpus / f"{s}.jsonl")}
    for split in ("train", "test"):
        qa = read_manifest(task_data / f"{split}_qa.jsonl")
        assert {t["type"] for i in qa for t in i["qa"]} == {*FACT_TYPES, "describe"}
        # Every reference answer of a known fact scores right on its own item, as eval-tasks scores it.
        g = DEMO_QA_GRAMMAR
        for qtype in FACT_TYPES:
            turns = [(t["a"], g.prepare(i)) for i in qa for t in i["qa"] if t["type"] == qtype]
            scores = attribute_accuracy([a for a, _ in turns], [r for _, r in turns], {qtype: g.groups[qtype]}, g.parse)
            assert scores[qtype].accuracy == 1.0, qtype
            assert on_topic([a for a, _ in turns], g.groups[qtype], g.parse) == 1.0, qtype
        for item in read_manifest(task_data / f"{split}_segments.jsonl"):
            segs = item["segments"]
            assert all(clips[s["clip"]]["split"] == split for s in segs)  # never mixing splits
            assert len({clips[s["clip"]]["instrument"] for s in segs}) == len(segs) >= 2
            info = sf.info(item["audio"])
            assert segs[0]["start_s"] == 0 and segs[-1]["end_s"] == pytest.approx(info.frames / info.samplerate)
            for s in segs:  # each section is a window of 40-100% of its clip's samples
                share = (s["end_s"] - s["start_s"]) / sf.info(clips[s["clip"]]["audio"]).duration
                assert 0.4 - 1e-3 <= share <= 1 + 1e-6
        lengths = [s["end_s"] - s["start_s"] for i in read_manifest(task_data / f"{split}_segments.jsonl")
                   for s in i["segments"]]
        assert max(lengths) - min(lengths) > 0.1  # varied: a section's length does not tell its boundary
        for item in read_manifest(task_data / f"{split}_playlist.jsonl"):
            assert 2 <= len(item["audios"]) and all(clips[c]["split"] == split for c in item["clips"])
            assert set(item["instruments"]) == {clips[c]["instrument"] for c in item["clips"]}


def test_task_data_built_with_relative_paths_reads_back(task_corpus, tmp_path, monkeypatch):
    """As `mmtok demo --out runs/demo` builds it: relative directories, read from the manifests."""
    from mmtok.demo.tasks import build_task_data

    monkeypatch.chdir(tmp_path)
    build_task_data(task_corpus, "rel/tasks", seed=0, segments_per_clip=1.0, playlists_per_clip=1.0)
    monkeypatch.chdir(tmp_path.parent)  # and from another working directory
    for task in ("qa", "segments", "playlist"):
        items = read_manifest(tmp_path / "rel" / "tasks" / f"train_{task}.jsonl")
        paths = [p for i in items for p in i.get("audios", [i["audio"]])]
        assert items and all(Path(p).is_file() for p in paths), task


def test_timestamps_round_trip_through_text():
    segs = [{"start_s": 0.0, "end_s": 4.6, "text": "grand piano, slow."}, {"start_s": 4.6, "end_s": 65.0, "text": "violin."}]
    text = format_segments(segs)
    assert text == "0:00-0:05 grand piano, slow. 0:05-1:05 violin."
    assert parse_segments(text) == [{"start_s": 0.0, "end_s": 5.0, "text": "grand piano, slow."},
                                    {"start_s": 5.0, "end_s": 65.0, "text": "violin."}]
    assert parse_segments("no stamps here") == []


def test_bad_task_items_name_the_item(tmp_path, real_audio_files, tokenizer_dir):
    def manifest(*rows):
        path = tmp_path / "m.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    clip = str(real_audio_files[0])
    with pytest.raises(ManifestError, match=r"m.jsonl:1: item 'q1': a question needs its audio"):
        read_manifest(manifest({"id": "q1", "task": "qa", "qa": [{"q": "What instrument?", "a": "Piano."}]}))
    with pytest.raises(ManifestError, match=r"m.jsonl:2: item 's1': segment 1 starts at 2 s, before segment 0 ends"):
        read_manifest(manifest({"audio": clip, "text": "x"}, {"id": "s1", "audio": clip, "task": "segments", "segments": [
            {"start_s": 0, "end_s": 3, "text": "a"}, {"start_s": 2, "end_s": 4, "text": "b"}]}))
    with pytest.raises(ManifestError, match=r"item 'p1': a playlist holds 2 to 8 clips, this one 9"):
        read_manifest(manifest({"id": "p1", "task": "playlist", "audios": [clip] * 9, "text": "x"}))
    with pytest.raises(ManifestError, match="unknown task 'lyrics'"):
        read_manifest(manifest({"audio": clip, "text": "x", "task": "lyrics"}))
    # A section beyond the audio is found when the audio is read: reported, naming the item.
    from mmtok.data.shard import shard_manifest

    long = manifest({"id": "s2", "audio": clip, "task": "segments", "segments": [
        {"start_s": 0, "end_s": 2, "text": "a"}, {"start_s": 2, "end_s": 600, "text": "b"}]}, {"audio": clip, "text": "ok"})
    summary = shard_manifest(long, tokenizer_dir, tmp_path / "shards", split="bad", progress=False)
    report = [json.loads(line) for line in (tmp_path / "shards" / "bad-report.jsonl").read_text().splitlines()]
    assert summary["samples"] == 1 and len(report) == 1
    assert "item 's2': segment 1 ends at 600 s, beyond the audio" in report[0]["reason"]


def test_caption_items_draw_the_same_under_any_task_mix_and_qa_loss_is_on_answers(tokenizer, real_audio_files):
    codes = tokenizer.encode_audio(real_audio_files[0])
    cfg = TemplateConfig()
    for seed in range(6):  # a caption item: task_document == pick_caption + make_document, same draws
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        doc = task_document(tokenizer, {}, [codes], ["one caption"], a, cfg, 300)
        ref = make_document(tokenizer, codes, "one caption", b, cfg, 300)
        assert doc.ids.tolist() == ref.ids.tolist() and doc.loss.tolist() == ref.loss.tolist()
        assert a.bit_generator.state == b.bit_generator.state
    lay = tokenizer.layout
    turns = [{"q": "What instrument is playing?", "a": "Piano."}, {"q": "Major or minor?", "a": "Minor."}]
    doc = qa_document(tokenizer, codes, turns, np.random.default_rng(0), cfg, 300)
    ids = doc.ids.tolist()
    assert ids[:2] == [lay.bos_id, lay.id_of(TASK_QA)] and len(ids) <= 300
    runs, cur = [], []
    for i, on in zip(ids, doc.loss):
        if on:
            cur.append(i)
        elif cur:
            runs, cur = runs + [cur], []
    runs += [cur] if cur else []
    assert all(r[-1] == lay.eos_id for r in runs)  # each answer and its <eos>, nothing else
    assert sorted(tokenizer.decode_text(r[:-1]).strip() for r in runs) == ["Minor.", "Piano."]
    assert ids.count(lay.id_of(SEP)) == 2  # each turn's question and its answer
    # The first turn is the inference prompt, token for token: the question before the audio and
    # again after <eoa>, then its answer.
    soa, eoa = ids.index(lay.soa_id), ids.index(lay.eoa_id)
    first_q = tokenizer.decode_text(ids[2:soa])
    prompt = qa_prompt_ids(tokenizer, ids[soa : eoa + 1], first_q)
    assert ids[: len(prompt)] == prompt and prompt[-1] == lay.id_of(SEP)
    first_a = next(t["a"] for t in turns if t["q"] == first_q)
    assert tokenizer.decode_text(ids[len(prompt) : ids.index(lay.eos_id)]).strip() == first_a


def test_qa_turns_trains_one_answer_per_document_on_the_inference_prompt(tokenizer, real_audio_files):
    codes = tokenizer.encode_audio(real_audio_files[0])
    lay = tokenizer.layout
    turns = [{"q": "What instrument is playing?", "a": "Piano."}, {"q": "Major or minor?", "a": "Minor."},
             {"q": "What is the tempo?", "a": "Slow."}]
    cfg = TemplateConfig(qa_turns=1)
    answered = set()
    for seed in range(12):
        ids = qa_document(tokenizer, codes, turns, np.random.default_rng(seed), cfg, 300).ids.tolist()
        assert ids.count(lay.id_of(SEP)) == 1 and ids.count(lay.eos_id) == 1 and ids[-1] == lay.eos_id
        soa, eoa = ids.index(lay.soa_id), ids.index(lay.eoa_id)
        question = tokenizer.decode_text(ids[2:soa])
        prompt = qa_prompt_ids(tokenizer, ids[soa : eoa + 1], question)
        assert ids[: len(prompt)] == prompt
        answer = tokenizer.decode_text(ids[len(prompt) : -1]).strip()
        turn = next(t for t in turns if t["q"] == question)
        assert answer == turn["a"]  # its own answer, no other turn's text beside it
        answered.add(question)
    assert answered == {t["q"] for t in turns}  # the turn is drawn, not always the first
    two = qa_document(tokenizer, codes, turns, np.random.default_rng(0), TemplateConfig(qa_turns=2), 300)
    assert two.ids.tolist().count(lay.id_of(SEP)) == 2 and two.ids.tolist().count(lay.eos_id) == 2
    with pytest.raises(ValueError, match="qa_turns must be >= 0"):
        TemplateConfig(qa_turns=-1)


def test_packed_batches_hold_every_task(task_shards, tokenizer):
    from mmtok.data.loader import DataConfig

    cfg = DataConfig(train_shards=f"{task_shards / 'shards.jsonl'}#train", seq_len=768, batch_size=2, seed=0,
                     workers=0, shuffle_buffer=4)
    seen = set()
    lay = tokenizer.layout
    for n, batch in enumerate(cfg.build(tokenizer)):
        tokens = batch.tokens
        for t in (TASK_QA, TASK_SEGMENTS, TASK_PLAYLIST):
            if (tokens == lay.id_of(t)).any():
                seen.add(t)
        assert batch.loss_mask.any()
        if n == 12:
            break
    assert seen == {TASK_QA, TASK_SEGMENTS, TASK_PLAYLIST}
    # The task mix can leave a task out entirely.
    cfg.templates = TemplateConfig(mix_qa=0.0, mix_segments=0.0, mix_playlist=0.0)
    for n, batch in enumerate(cfg.build(tokenizer)):
        assert not any((batch.tokens == lay.id_of(t)).any() for t in (TASK_QA, TASK_SEGMENTS, TASK_PLAYLIST))
        if n == 3:
            break


def test_a_tokenizer_without_task_tokens_loads_and_names_what_it_lacks(tokenizer_dir, real_audio_files, tmp_path):
    import shutil

    from mmtok import MultimodalTokenizer
    from mmtok.tokenizer.layout import VocabLayout

    old = tmp_path / "old_tok"
    shutil.copytree(tokenizer_dir, old)
    new = VocabLayout.load(tokenizer_dir / "layout.json")
    layout = VocabLayout(new.text_size, new.n_codebooks, new.codebook_size, special_tokens=ORIGINAL_SPECIALS,
                         n_spare=23, n_scale_tokens=new.n_scale_tokens)  # the caption tasks' nine specials only
    layout.save(old / "layout.json")
    config = json.loads((old / "tokenizer.json").read_text())
    (old / "tokenizer.json").write_text(json.dumps({**config, "layout_hash": layout.hash}))
    tok = MultimodalTokenizer.from_pretrained(old)
    assert tok.layout.hash == layout.hash != new.hash
    assert (tok.layout.audio_base, tok.layout.vocab_size) == (new.audio_base, new.vocab_size)  # no id moved
    for t in ORIGINAL_SPECIALS:
        assert tok.layout.id_of(t) == new.id_of(t)
    with pytest.raises(LayoutMismatchError, match="question answering needs the special token.*rebuild the tokenizer"):
        qa_prompt_ids(tok, [tok.layout.soa_id, tok.layout.eoa_id], "What instrument?")
    # Shards of qa items made with it train as caption items.
    codes = tok.encode_audio(real_audio_files[0])
    meta = {"task": "qa", "qa": [{"q": "What instrument?", "a": "Piano."}]}
    a, b = np.random.default_rng(0), np.random.default_rng(0)
    doc = task_document(tok, meta, [codes], ["Piano."], a, TemplateConfig(), 200)
    assert doc.ids.tolist() == make_document(tok, codes, "Piano.", b, TemplateConfig(), 200).ids.tolist()


# ---- metrics against hand-worked answers --------------------------------------------------------
def test_retrieval_metrics_on_a_hand_worked_ranking():
    # 3 queries x 4 candidates. Query 0: relevant {2}, ranked 1st. Query 1: relevant {0}, ranked 3rd.
    # Query 2: relevant {1, 3}, ranked 2nd and 4th.
    scores = np.array([[0.1, 0.2, 0.9, 0.3], [0.2, 0.8, 0.9, 0.1], [0.9, 0.5, 0.1, 0.0]])
    m = retrieval_metrics(scores, [{2}, {0}, {1, 3}])
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@5"] == 1.0 and m["R@10"] == 1.0
    # AP@10: q0 = 1; q1 = 1/3; q2 = (1/2 + 2/4) / 2 = 1/2
    assert m["mAP@10"] == pytest.approx((1 + 1 / 3 + 0.5) / 3)
    assert m["median_rank"] == 2.0 and m["mean_rank"] == pytest.approx(2.0)
    r = random_baseline(4, [{2}, {0}, {1, 3}])
    # R@1: 1/4, 1/4, 2/4; median first rank: one relevant of 4 -> 2 (P(1)=P(2)=1/4 reach 0.5 at 2)
    assert r["R@1"] == pytest.approx((0.25 + 0.25 + 0.5) / 3) and r["R@5"] == 1.0
    # Expected AP with one relevant of 4: (1 + 1/2 + 1/3 + 1/4) / 4
    one = (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4
    assert random_baseline(4, [{0}])["mAP@10"] == pytest.approx(one)
    rng = np.random.default_rng(0)  # the exact expectation agrees with shuffling
    sims = [retrieval_metrics(rng.random((1, 4)), [{1, 3}])["mAP@10"] for _ in range(4000)]
    assert random_baseline(4, [{1, 3}])["mAP@10"] == pytest.approx(np.mean(sims), abs=0.02)


def test_on_topic_counts_answers_to_the_question_asked_right_or_wrong():
    from mmtok.demo.attributes import DEMO_QA_GRAMMAR as g
    from mmtok.eval.qa import on_topic

    # Mode asked: a meter and a tempo answer another question; a wrong mode and a key still answer it.
    mode = ["It is in 3/4.", "Minor.", "It is in D major.", "A fast piece."]
    assert on_topic(mode, g.groups["mode"], g.parse) == pytest.approx(2 / 4)
    family = ["It is a trumpet, which belongs to the brass family.", "The reed family.", "It is in 4/4."]
    assert on_topic(family, g.groups["family"], g.parse) == pytest.approx(2 / 3)
    assert on_topic([], g.groups["meter"], g.parse) == 0.0


def test_boundary_error_on_hand_built_sections():
    true = [[{"start_s": 0, "end_s": 5, "text": "a"}, {"start_s": 5, "end_s": 9, "text": "b"},
             {"start_s": 9, "end_s": 12, "text": "c"}],
            [{"start_s": 0, "end_s": 4, "text": "a"}, {"start_s": 4, "end_s": 8, "text": "b"}]]
    pred = [[{"start_s": 0, "end_s": 6, "text": "a"}, {"start_s": 6, "end_s": 8, "text": "b"},
             {"start_s": 8, "end_s": 12, "text": "c"}],  # right count; boundaries 6 vs 5, 8 vs 9
            []]  # nothing parsed: one section over the whole 8 s
    m = segment_metrics(pred, true, [12.0, 8.0])
    assert m["sections_right"] == 0.5 and m["unparsed"] == 1
    # |5-6| = 1, |9-8| = 1, and the second item's boundary 4 is 4 s from the edges 0 and 8.
    assert m["boundary_mae_s"] == pytest.approx((1 + 1 + 4) / 3) and m["boundaries"] == 3
    assert m["boundary_mae_s_count_right"] == pytest.approx(1.0)
    # The trivial baseline: 3 sections is no more common than 2, so the tie goes to 2, of equal length.
    b = trivial_baseline(true, [12.0, 8.0])
    assert b["sections"] == 2 and b["sections_right"] == 0.5
    # Edges 0, 6, 12 against 5 and 9 (1 and 3); edges 0, 4, 8 against 4 (0).
    assert b["boundary_mae_s"] == pytest.approx((1 + 3 + 0) / 3)


def test_retrieval_scores_reuse_the_prefix_cache_exactly(tokenizer, real_audio_files):
    """Scores from one prefix forward + expanded caches equal a plain full forward per pair."""
    from mmtok.data.templates import caption_prompt_ids, text_prompt_ids
    from mmtok.generate.retrieval import caption_scores
    from mmtok.model.config import ModelConfig

    torch.manual_seed(0)
    model = ModelConfig(dim=64, n_layers=2, n_heads=4, max_seq_len=256, attention="sdpa").for_vocab(
        len(tokenizer)).build().eval()
    codes = [tokenizer.encode_audio(f) for f in real_audio_files[:2]]
    codes = [type(c)(c.codes[:, :25], 25 * tokenizer.config.hop, c.sample_rate, c.codec) for c in codes]
    captions = ["A slow piano piece.", "A fast violin tune in G major, 3/4 time.", "Organ."]
    got = caption_scores(model, tokenizer, codes, captions, batch_size=2)

    def full(prefix, caption):
        ids = prefix + tokenizer.encode_text(caption) + [tokenizer.layout.eos_id]
        logp = model(torch.tensor([ids])).log_softmax(-1)[0]
        return sum(float(logp[t - 1, ids[t]]) for t in range(len(prefix), len(ids)))

    with torch.no_grad():
        want = np.array([[full(caption_prompt_ids(tokenizer, tokenizer.codes_to_ids(c)), t)
                          - full(text_prompt_ids(tokenizer), t) for t in captions] for c in codes])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


# ---- the trained model through the command line -------------------------------------------------
def test_ask_answers_every_question_through_cli_and_api(task_run, task_data, capsys):
    from mmtok.generate.asker import Asker
    from mmtok.generate.captioner import CaptionConfig
    from mmtok.generate.sampling import GenerationConfig

    item = read_manifest(task_data / "test_qa.jsonl")[0]
    questions = [t["q"] for t in item["qa"][:3]]
    rc, out, err = run_cli(capsys, "ask", "--checkpoint", task_run, item["audio"], *questions, "--json",
                           "--max-new-tokens", "12")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["question"] for r in rows] == questions and all(isinstance(r["answer"], str) for r in rows)
    asker = Asker.from_checkpoint(task_run, CaptionConfig(generation=GenerationConfig(max_new_tokens=12, greedy=True)))
    assert asker(item["audio"], questions) == [r["answer"] for r in rows]
    # The longest question's prompt with the most audio that fits leaves just room for the answer.
    tok, frames = asker.tokenizer, asker.frames_for(questions)
    longest = max(questions, key=lambda q: len(tok.encode_text(q)))
    clip = tok.encode_audio(item["audio"])
    reps = frames // clip.n_frames + 1  # the clip looped past the limit, then cut to it
    codes = dataclasses.replace(clip, codes=np.tile(clip.codes, (1, reps)), n_samples=clip.n_samples * reps)
    prompt = qa_prompt_ids(tok, tok.codes_to_ids(crop_codes(codes, 0, frames, tok.config.hop)), longest)
    assert asker.context - audio_token_cost(tok)[1] < len(prompt) + asker.max_new_tokens <= asker.context
    with pytest.raises(ValueError, match="a question needs its audio"):
        asker(None, questions)
    with pytest.raises(ValueError, match="at least one non-empty question"):
        asker(item["audio"], [])


def test_timestamps_and_playlist_through_cli(task_run, task_data, capsys):
    seg = read_manifest(task_data / "test_segments.jsonl")[0]
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", task_run, seg["audio"], "--timestamps",
                           "--max-new-tokens", "40")
    assert rc == 0, err
    row = json.loads(out)
    assert row["segments"] == parse_segments(row["caption"]) and isinstance(row["segments"], list)
    # Recaptioned: the same stamps (greedy decoding writes the same stamped caption), each section's
    # text the caption of its own audio.
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", task_run, seg["audio"], "--timestamps",
                           "--section-text", "recaption", "--max-new-tokens", "40")
    assert rc == 0, err
    again = json.loads(out)
    assert again["caption"] == row["caption"]
    assert [(s["start_s"], s["end_s"]) for s in again["segments"]] == [(s["start_s"], s["end_s"]) for s in row["segments"]]
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", task_run, seg["audio"], "--section-text", "recaption")
    assert rc == 2 and out == "" and "--section-text needs --timestamps" in err
    pl = read_manifest(task_data / "test_playlist.jsonl")[0]
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", task_run, "--playlist", *pl["audios"], "--json",
                           "--max-new-tokens", "24")
    assert rc == 0, err
    assert json.loads(out)["audios"] == pl["audios"]
    # Eight clips beside a 500-token caption leave each under half a second of the 768-id context:
    # refused, in one line, before any audio is read.
    rc, out, err = run_cli(capsys, "caption", "--checkpoint", task_run, "--playlist", *(pl["audios"] * 4)[:8],
                           "--max-new-tokens", "500")
    assert rc == 2 and out == "" and "playlist over the context budget: 8 clips" in err
    assert len(err.strip().splitlines()) == 1


def test_recaptioned_sections_are_the_captions_of_their_own_audio(task_run, task_data):
    from mmtok.data.templates import crop_codes, section_codes
    from mmtok.generate.captioner import CaptionConfig, Captioner
    from mmtok.generate.sampling import GenerationConfig

    captioner = Captioner.from_checkpoint(task_run, CaptionConfig(generation=GenerationConfig(max_new_tokens=12,
                                                                                             greedy=True)))
    tok = captioner.tokenizer
    codes = captioner.encode(read_manifest(task_data / "test_segments.jsonl")[0]["audio"])
    fr, hop, end = tok.frame_rate, tok.config.hop, codes.duration
    sections = [{"start_s": 0.0, "end_s": 0.8, "text": "a"}, {"start_s": 0.8, "end_s": end + 3.0, "text": "b"},
                {"start_s": end + 3.0, "end_s": end + 5.0, "text": "past the end"}]
    cut = int(0.8 * fr)
    crops = [crop_codes(codes, 0, round(0.8 * fr), hop), crop_codes(codes, cut, codes.n_frames - cut, hop)]
    assert np.array_equal(section_codes(codes, 0.8, end + 3.0, hop).codes, codes.codes[:, cut:])
    assert section_codes(codes, end + 3.0, end + 5.0, hop) is None
    [out] = captioner.recaption_sections([codes], [sections])
    assert [s["text"] for s in out] == captioner.caption_codes(crops) + ["past the end"]
    assert [(s["start_s"], s["end_s"]) for s in out] == [(s["start_s"], s["end_s"]) for s in sections]
    assert sections[0]["text"] == "a"  # the stamped sections are left as they were
    with pytest.raises(ValueError, match="section_text must be one of"):
        Captioner(captioner.model, tok, CaptionConfig(section_text="both"))
    with pytest.raises(ValueError, match="section_text must be one of"):
        captioner.timestamps_codes([codes], "both")


def test_a_section_of_segmented_codes_starts_at_the_segment_it_starts_in():
    """encodec_48khz-style codes (scaled segments, 1% overlap): a section keeps whole segments with
    their scales, from the one its start lies in."""
    from mmtok.data.templates import section_codes
    from mmtok.tokenizer.codes import AudioCodes, segment_frame_counts, segment_stride

    sr, hop, fps = 1000, 10, 100  # 1 s segments of 100 frames, stride 990 samples
    n_samples = 3500
    counts = segment_frame_counts(n_samples, fps, hop)
    codes = AudioCodes(np.arange(sum(counts))[None], n_samples, sr, "seg", np.arange(len(counts)) + 1.0, fps)
    crop = section_codes(codes, 2.2, 3.5, hop)  # starts in segment 2 (from 1.98 s)
    assert crop.scales.tolist() == [3.0, 4.0] and crop.n_samples == n_samples - 2 * segment_stride(fps, hop)
    assert crop.codes[0, 0] == sum(counts[:2])  # the first frame of segment 2


def test_retrieve_and_eval_tasks_report_every_task(task_run, task_corpus, task_data, tmp_path, capsys):
    manifest = tmp_path / "all.jsonl"  # every clip of the corpus: 6 captions, 6 clips
    manifest.write_text((task_corpus / "train.jsonl").read_text() + (task_corpus / "test.jsonl").read_text())
    rc, out, err = run_cli(capsys, "retrieve", "--checkpoint", task_run, "--captions", manifest, "--json")
    assert rc == 0, err
    report = json.loads(out)
    for d in ("text2audio", "audio2text"):
        m, r = report["directions"][d]["metrics"], report["directions"][d]["random"]
        assert m["queries"] == 6 and m["candidates"] == 6 and 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] == 1.0
        assert r["R@1"] == pytest.approx(1 / 6) and 1 <= m["median_rank"] <= 6
    captions = tmp_path / "captions.txt"
    captions.write_text("A slow piano piece.\nA lively flute tune.\n")
    rc, out, err = run_cli(capsys, "retrieve", "--checkpoint", task_run, "--captions", captions, "--audio",
                           task_corpus / "audio", "--direction", "text2audio", "--top-k", "2")
    assert rc == 0, err
    assert len(out.splitlines()) == 2

    rc, out, err = run_cli(capsys, "eval-tasks", "--checkpoint", task_run, "--qa", task_data / "test_qa.jsonl",
                           "--segments", task_data / "test_segments.jsonl", "--playlist",
                           task_data / "test_playlist.jsonl", "--retrieval", manifest, "--music",
                           task_corpus / "test.jsonl", "--music-seconds", "1", "--attributes", "--no-meteor",
                           "--max-new-tokens", "32", "--out", tmp_path / "rep")
    assert rc == 0, err
    rep = json.loads((tmp_path / "rep" / "tasks.json").read_text())
    qa = rep["qa"]
    assert qa["n_questions"] == sum(len(i["qa"]) for i in read_manifest(task_data / "test_qa.jsonl"))
    assert set(qa["attributes_by_type"]) == {"instrument", "family", "tempo_class", "key", "mode", "meter"}
    assert set(qa["on_topic_by_type"]) == set(qa["attributes_by_type"])
    assert "BLEU-4" in qa["answer_metrics"] and qa["n_free_form"] > 0
    assert 0 <= rep["segments"]["sections_right"] <= 1 and "section_caption_metrics" in rep["segments"]
    assert "section_caption_metrics" in rep["segments"]["recaptioned"]
    assert "tempo_class" in rep["playlist"]["set_attributes"]
    assert rep["retrieval"]["directions"]["text2audio"]["metrics"]["queries"] == 6
    assert rep["music"]["n"] == 2 and "round_trip_attributes" in rep["music"]
    md = (tmp_path / "rep" / "tasks.md").read_text()
    for title in ("Question answering", "Time-stamped captions", "Playlist captions", "Retrieval", "Text -> music"):
        assert title in md
