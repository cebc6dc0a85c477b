"""Published data sets -> manifests -> shards: each format in its published layout (columns,
quoting, list-strings, JSON shapes), pointing at real rendered music renamed as the set names its
files, with some rows whose audio is missing or unreadable."""

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from mmtok.data.importers import FORMATS, DatasetFormatError, MissingAudioError, import_dataset
from mmtok.data.manifest import read_manifest, write_jsonl
from mmtok.data.shard import ShardConfig, encode_sample, read_window, shard_manifest
from mmtok.data.stream import resolve_shards

SR = 24000


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)  # the published files: minimal quoting, "" inside quotes
        w.writerow(header)
        w.writerows(rows)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sets(tmp_path_factory, real_audio_files):
    """Each format's files and audio directory: {format: (source, audio_root, extra kwargs)}."""
    root = tmp_path_factory.mktemp("datasets")
    clips = [sf.read(p, dtype="float32")[0] for p in real_audio_files]
    durations = [len(c) / SR for c in clips]
    assert 10 < min(durations) and max(durations) < 16 * 3  # the clips' lengths the cases below rely on

    def put(rel, i, fmt="WAV", subtype=None):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "WAV" and subtype is None:
            shutil.copy(real_audio_files[i], path)
        else:
            sf.write(path, clips[i], SR, format=fmt, subtype=subtype)
        return path

    out = {}
    # MusicCaps: a cut clip named as the Kaggle download names it, a full-length recording (cut at
    # shard time), a FLAC from another download script, one missing, one unreadable.
    mc = root / "musiccaps"
    put("musiccaps/audio/[-0Gj8-vB1q4]-[30-40].wav", 0)
    put("musiccaps/audio/long/abcDEF_-123.wav", 1)  # longer than the 2 s clip below: cut at shard time
    put("musiccaps/audio/flacOne_0-10.flac", 2, "FLAC", "PCM_16")
    (mc / "audio" / "garbage1.wav").write_bytes(b"not audio at all" * 64)
    write_csv(mc / "musiccaps-public.csv", FORMATS["musiccaps"].COLUMNS, [
        ["-0Gj8-vB1q4", "30", "40", "/m/0140xf,/m/02cjck,/m/04rlf",
         "['low quality', 'sustained strings melody', 'soft female vocal']",
         'The low quality recording features a ballad song that contains sustained strings, "mellow" piano.',
         "4", "False", "True"],
        ["abcDEF_-123", "1", "3", "/m/04rlf", "['piano', 'slow tempo', \"children's song\"]",
         "A solo piano plays a slow, gentle melody.", "7", "True", "False"],
        ["flacOne", "0", "10", "/m/04rlf", "[]", "An organ holds long chords.", "2", "False", "False"],
        ["missingYTID", "10", "20", "/m/04rlf", "['rock']", "A loud rock song.", "1", "False", "False"],
        ["garbage1", "0", "10", "/m/04rlf", "['noise']", "Noise.", "1", "False", "True"],
    ])  # fmt: skip
    out["musiccaps"] = (mc / "musiccaps-public.csv", mc / "audio", {})

    # Song Describer: several captions per track (the invalid one first in the file), an MP3.
    sd = root / "song_describer"
    put("song_describer/audio/00/1051200.2min.mp3", 3, "MP3", "MPEG_LAYER_III")
    put("song_describer/audio/40/1402340.2min.wav", 4)
    write_csv(sd / "song_describer.csv", FORMATS["song_describer"].COLUMNS, [
        ["1", "1051200", "A guitar piece, not validated.", "False", "2", "44", "55", "00/1051200.2min.mp3", "120.0"],
        ["2", "1051200", "A nylon guitar plays a calm, bright tune.", "True", "1", "44", "55",
         "00/1051200.2min.mp3", "120.0"],
        ["3", "1051200", "Gentle classical guitar.", "True", "0", "44", "55", "00/1051200.2min.mp3", "120.0"],
        ["4", "1402340", "A trumpet solo.", "True", "1", "66", "77", "40/1402340.2min.mp3", "120.0"],
        ["5", "999", "Lost track.", "True", "1", "1", "1", "99/999.2min.mp3", "120.0"],
    ])  # fmt: skip
    out["song_describer"] = (sd / "song_describer.csv", sd / "audio", {})

    # MusicBench: JSON lines, location relative to the set's root.
    mb = root / "musicbench"
    put("musicbench/datashare/data/-0SdAVK79lg_0.wav", 5)
    put("musicbench/datashare/data/_z1x2_3.wav", 0)
    base = {"alt_caption": "", "prompt_aug": "", "prompt_ch": "The chord progression is Bbm7, Ab6.",
            "prompt_bt": "The beat counts to 4.", "prompt_bpm": "The bpm is 99.0.",
            "prompt_key": "This song is in the key of Bb minor.", "beats": [[0.3, 0.93], [1.0, 2.0]], "bpm": 99.0,
            "chords": ["Bbm7", "Ab6"], "chords_time": [0.464, 3.436], "key": ["Bb", "minor"], "keyprob": [0.87],
            "is_audioset_eval_mcaps": False}  # fmt: skip
    (mb / "MusicBench_train.json").write_text("\n".join(json.dumps(r) for r in [
        {"location": "data/-0SdAVK79lg_0.wav", "main_caption": "A flute melody. The bpm is 99.", **base,
         "alt_caption": "A flute tune at 99 beats per minute."},
        {"location": "data/gone_1.wav", "main_caption": "Missing.", **base},
    ]) + "\n")  # fmt: skip
    (mb / "MusicBench_test_A.json").write_text(json.dumps(
        {"location": "data/_z1x2_3.wav", "main_caption": "Piano in F# major.", **base, "bpm": 120.5,
         "key": ["F#", "major"], "is_audioset_eval_mcaps": True}) + "\n")  # fmt: skip
    out["musicbench"] = (mb, mb / "datashare", {})

    # AudioCaps: 5 captions per test clip; one long recording (cut from start_time) in test.
    ac = root / "audiocaps"
    long = np.concatenate(clips[:3])
    assert len(long) / SR > 15.5
    (ac / "audio").mkdir(parents=True)
    sf.write(ac / "audio" / "Ylongvideo01.wav", long, SR)
    put("audiocaps/audio/train/91139.wav", 1)  # named by audiocap_id
    put("audiocaps/audio/Yshort02.wav", 4)  # 10.5 s: the clip itself
    cols = FORMATS["audiocaps"].COLUMNS
    write_csv(ac / "train.csv", cols, [["91139", "r1ssd", "30", "A man speaks, then music plays"],
                                       ["58146", "nofile", "0", "Wind blows"]])  # fmt: skip
    write_csv(ac / "val.csv", cols, [["1", "missingval", "20", "Rain falls"]])
    write_csv(ac / "test.csv", cols, [[str(100 + i), "longvideo01", "5", f"Music plays, caption {i}"] for i in range(5)]
              + [[str(200 + i), "short02", "0", f"An organ, caption {i}"] for i in range(5)])  # fmt: skip
    out["audiocaps"] = (ac, ac / "audio", {})

    # Clotho: one CSV per split, file names with spaces and commas, audio in split folders.
    cl = root / "clotho"
    put("clotho/development/Birds, morning chorus.wav", 3)
    put("clotho/evaluation/Distorted AM Radio noise.wav", 4)
    cols = FORMATS["clotho"].COLUMNS
    write_csv(cl / "clotho_captions_development.csv", cols, [
        ["Birds, morning chorus.wav"] + [f"birds sing {i}" for i in range(5)],
        ["Nowhere.wav"] + [f"nothing {i}" for i in range(5)]])  # fmt: skip
    write_csv(cl / "clotho_captions_evaluation.csv", cols,
              [["Distorted AM Radio noise.wav"] + [f"a radio hisses {i}" for i in range(5)]])  # fmt: skip
    out["clotho"] = (cl, cl, {})

    # MusicQA: a pretty-printed JSON list; two entries about one clip; an eval file.
    qa = root / "musicqa"
    put("musicqa/audios/00012.wav", 5)
    put("musicqa/audios/00077.wav", 0)
    conv = lambda q, a: [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    (qa / "FinetuneMusicQA.json").write_text(json.dumps([
        {"audio_name": "00012.wav", "conversation": conv("What instrument is playing?", "A flute.")},
        {"audio_name": "00012.wav", "conversation": conv("Is it fast?", "No, it is slow.")
         + conv("What mood?", "Calm.")},
        {"audio_name": "99999.wav", "conversation": conv("Anything?", "Nothing.")},
    ], indent=4))  # fmt: skip
    (qa / "EvalMusicQA.json").write_text(json.dumps(
        [{"audio_name": "00077.wav", "conversation": conv("Describe the music.", "A piano chorale.")}], indent=4))
    out["musicqa"] = (qa, qa / "audios", {})

    # MusicInstruct: {"QA": [...]}; one clip found by ytid, one only through MusicCaps' start/end.
    mi = root / "musicinstruct"
    put("musicinstruct/audio/miA.wav", 1)
    put("musicinstruct/audio/[miB]-[2-4].wav", 2)  # named as the clip: the clip itself, whatever its length
    write_csv(mi / "musiccaps-public.csv", FORMATS["musiccaps"].COLUMNS,
              [["miB", "2", "4", "", "[]", "c", "1", "False", "True"]])  # fmt: skip
    (mi / "MusicInstruct.json").write_text(json.dumps({"QA": [
        {"question": "What is the tempo?", "answer": "Moderate.", "ytid": "miA", "is_audioset_eval": False,
         "caption": "A violin.", "qa_type": "short"},
        {"question": "Which instrument?", "answer": "A violin.", "ytid": "miA", "is_audioset_eval": False,
         "caption": "A violin.", "qa_type": "short"},
        {"question": "What key?", "answer": "F major.", "ytid": "miB", "is_audioset_eval": True, "caption": "",
         "qa_type": "long"},
        {"question": "Where?", "answer": "Nowhere.", "ytid": "miGone", "is_audioset_eval": False, "caption": "",
         "qa_type": "long"},
    ]}, indent=2))  # fmt: skip
    out["musicinstruct"] = (mi / "MusicInstruct.json", mi / "audio", {"musiccaps_csv": mi / "musiccaps-public.csv"})

    # audiocraft: egs/{train,valid}/data.jsonl; metadata JSON beside each audio file.
    ax = root / "audiocraft"
    a1, a2 = put("audiocraft/music/a1.wav", 4), put("audiocraft/music/sub/a2.flac", 5, "FLAC", "PCM_16")
    a3 = put("audiocraft/music/a3.wav", 0)
    a1.with_suffix(".json").write_text(json.dumps({
        "key": "C minor", "artist": "", "sample_rate": 24000, "file_extension": "wav",
        "description": "A solemn trumpet fanfare.", "keywords": "brass, fanfare", "duration": 6.0, "bpm": "96",
        "genre": "classical", "title": "", "name": "a1", "instrument": "trumpet", "moods": ["solemn", "stately"]}))
    a2.with_suffix(".json").write_text(json.dumps({
        "key": "Bb", "description": "Strings play softly.", "bpm": "", "genre": "", "instrument": "violin, cello",
        "moods": "calm, gentle"}))  # fmt: skip
    (ax / "egs" / "train").mkdir(parents=True)
    (ax / "egs" / "valid").mkdir(parents=True)
    line = lambda p: json.dumps({"path": p, "duration": 6.0, "sample_rate": 24000, "amplitude": None,
                                 "weight": None, "info_path": None})  # fmt: skip
    (ax / "egs" / "train" / "data.jsonl").write_text(
        "\n".join([line(str(a1)), line("sub/a2.flac"), line(str(a3)), line(str(ax / "music" / "gone.wav"))]) + "\n")
    (ax / "egs" / "valid" / "data.jsonl").write_text(line(str(a1)) + "\n")
    out["audiocraft"] = (ax / "egs", ax / "music", {})
    return out


@pytest.fixture(scope="module")
def imported(sets, tmp_path_factory):
    """{format: (summary, items by id (audio absolute), report)}: every format imported once."""
    out = tmp_path_factory.mktemp("manifests")
    result = {}
    for fmt, (source, audio_root, extra) in sets.items():
        summary = import_dataset(fmt, source, audio_root, out / fmt / "{split}.jsonl", **extra)
        items = [it for path in summary["manifests"] for it in read_manifest(path)]
        result[fmt] = (summary, {it["id"]: it for it in items}, read_jsonl(out / fmt / "all.import-report.jsonl"))
    return result


def reasons(report):
    return {r["id"]: r["reason"] for r in report}


def test_musiccaps(imported):
    summary, items, report = imported["musiccaps"]
    assert summary["splits"] == {"train": 2, "test": 1} and summary["windows"] == 1
    a = items["-0Gj8-vB1q4"]
    assert a["split"] == "test" and a["source"] == "musiccaps" and "start_s" not in a  # the file is the clip
    assert a["text"].endswith('sustained strings, "mellow" piano.') and "references" not in a
    assert a["aspects"] == ["low quality", "sustained strings melody", "soft female vocal"]
    assert a["audioset_labels"] == ["/m/0140xf", "/m/02cjck", "/m/04rlf"] and a["is_balanced_subset"] is False
    b = items["abcDEF_-123"]
    assert (b["start_s"], b["end_s"]) == (1, 3) and b["audio"].endswith("long/abcDEF_-123.wav")
    assert b["aspects"] == ["piano", "slow tempo", "children's song"] and b["split"] == "train"
    assert items["flacOne"]["audio"].endswith("flacOne_0-10.flac")
    r = reasons(report)
    assert r["missingYTID"] == "audio not found" and r["garbage1"].startswith("unreadable audio")
    assert "[missingYTID]-[10-20]" in next(x for x in report if x["id"] == "missingYTID")["looked_for"]
    assert summary["problems"] == 2  # one manifest per split:
    assert sorted(p.rsplit("/", 1)[-1] for p in summary["manifests"]) == ["test.jsonl", "train.jsonl"]


def test_song_describer(imported):
    summary, items, report = imported["song_describer"]
    assert summary["splits"] == {"test": 2}
    t = items["1051200"]
    assert t["text"] == "A nylon guitar plays a calm, bright tune."  # validated captions first
    assert t["references"] == ["Gentle classical guitar.", "A guitar piece, not validated."]
    assert t["caption_ids"] == ["2", "3", "1"] and t["is_valid_subset"] is True and t["audio"].endswith(".mp3")
    assert items["1402340"]["audio"].endswith("1402340.2min.wav")  # another extension than the CSV's
    assert reasons(report) == {"999": "audio not found"}


def test_musicbench(imported):
    summary, items, report = imported["musicbench"]
    assert summary["splits"] == {"train": 1, "test": 1}
    a = items["-0SdAVK79lg_0"]
    assert a["text"] == "A flute melody. The bpm is 99." and a["references"] == ["A flute tune at 99 beats per minute."]
    assert (a["tempo_bpm"], a["key"], a["mode"]) == (99, "Bb", "minor") and a["chords"] == ["Bbm7", "Ab6"]
    assert "beats" not in a and "keyprob" not in a and "prompt_bpm" not in a
    b = items["_z1x2_3"]
    assert (b["split"], b["tempo_bpm"], b["key"], b["mode"]) == ("test", 120.5, "F#", "major")
    assert b["is_audioset_eval_mcaps"] is True and "references" not in b
    assert reasons(report) == {"gone_1": "audio not found"}


def test_audiocaps(imported):
    summary, items, report = imported["audiocaps"]
    assert summary["splits"] == {"train": 1, "test": 2}
    long = items["longvideo01_5"]
    assert long["text"] == "Music plays, caption 0" and long["references"] == [f"Music plays, caption {i}" for i in
                                                                                 range(1, 5)]  # fmt: skip
    assert (long["start_s"], long["end_s"]) == (5, 15) and long["audiocap_ids"] == [str(100 + i) for i in range(5)]
    assert "start_s" not in items["short02_0"]  # a 10 s download is the clip itself
    assert items["r1ssd_30"]["audio"].endswith("train/91139.wav")
    assert reasons(report) == {"nofile_0": "audio not found", "missingval_20": "audio not found"}
    assert {r["split"] for r in report} == {"train", "valid"}


def test_clotho(imported):
    summary, items, report = imported["clotho"]
    assert summary["splits"] == {"train": 1, "test": 1}
    b = items["Birds, morning chorus"]
    assert b["text"] == "birds sing 0" and b["references"] == [f"birds sing {i}" for i in range(1, 5)]
    assert items["Distorted AM Radio noise"]["split"] == "test"
    assert reasons(report) == {"Nowhere": "audio not found"}


def test_musicqa(imported):
    summary, items, report = imported["musicqa"]
    assert summary["splits"] == {"train": 1, "test": 1}
    a = items["00012"]
    assert a["task"] == "qa" and a["text"] == "A flute."
    assert a["qa"] == [{"q": "What instrument is playing?", "a": "A flute."}, {"q": "Is it fast?", "a": "No, it is slow."},
                       {"q": "What mood?", "a": "Calm."}]  # fmt: skip
    assert items["00077"]["split"] == "test" and items["00077"]["source"] == "musicqa"
    assert reasons(report) == {"99999": "audio not found"}


def test_musicinstruct(imported):
    summary, items, report = imported["musicinstruct"]
    a, b = items["miA"], items["miB"]
    assert a["task"] == "qa" and a["split"] == "train" and [p["q"] for p in a["qa"]] == ["What is the tempo?",
                                                                                         "Which instrument?"]
    assert b["split"] == "test" and b["audio"].endswith("[miB]-[2-4].wav") and b["text"] == "F major."
    assert reasons(report) == {"miGone": "audio not found"}


def test_audiocraft(imported):
    summary, items, report = imported["audiocraft"]
    assert summary["splits"] == {"train": 2, "valid": 1}
    a1, a2 = items["a1"], items["a2"]
    assert a1["text"] == "A solemn trumpet fanfare." and (a1["key"], a1["mode"], a1["tempo_bpm"]) == ("C", "minor", 96)
    assert a1["instrument"] == "trumpet" and a1["moods"] == ["solemn", "stately"] and a1["genre"] == "classical"
    assert a1["keywords"] == ["brass", "fanfare"] and "title" not in a1
    assert a2["key"] == "Bb" and "mode" not in a2 and "tempo_bpm" not in a2
    assert a2["instruments"] == ["violin", "cello"] and a2["moods"] == ["calm", "gentle"]
    r = reasons(report)
    assert r["a3"].startswith("no metadata file") and r["gone"].startswith("no metadata file")


@pytest.fixture(scope="module")
def shards(imported, tokenizer_dir, tmp_path_factory):
    """One shard run over a few items of every format, the windowed clips included."""
    out = tmp_path_factory.mktemp("import_shards")
    picks = {"musiccaps": ["abcDEF_-123", "flacOne"], "song_describer": ["1051200"], "musicbench": ["_z1x2_3"],
             "audiocaps": ["longvideo01_5"], "clotho": ["Birds, morning chorus"], "musicqa": ["00012"],
             "musicinstruct": ["miB"], "audiocraft": ["a1"]}  # fmt: skip
    rows = [imported[fmt][1][i] for fmt, ids in picks.items() for i in ids]
    write_jsonl(out / "mixed.jsonl", rows)
    summary = shard_manifest(out / "mixed.jsonl", tokenizer_dir, out, split="imported",
                             cfg=ShardConfig(max_samples=4), progress=False)  # fmt: skip
    return out, rows, summary


def test_imported_items_shard(shards, tokenizer):
    import webdataset as wds

    out, rows, summary = shards
    assert summary["samples"] == len(rows) and summary["skipped"] == 0
    samples = list(wds.WebDataset(resolve_shards(out / "shards.jsonl#imported"), shardshuffle=False,
                                  empty_check=False).decode())  # fmt: skip
    by_id = {s["json"]["id"]: s for s in samples}
    assert set(by_id) == {r["id"] for r in rows}
    qa = by_id["00012"]["json"]
    assert qa["task"] == "qa" and len(qa["qa"]) == 3 and by_id["00012"]["txt"] == "A flute."
    assert by_id["1051200"]["json"]["references"][0] == "Gentle classical guitar."
    assert by_id["a1"]["json"]["key"] == "C" and by_id["a1"]["json"]["tempo_bpm"] == 96
    for item in rows:  # a window's codes are those of the sliced file; a whole file's, those of the file
        s, window = by_id[item["id"]], (item.get("start_s"), item.get("end_s"))
        if window[0] is None:
            continue
        wav, sr = sf.read(item["audio"], dtype="float32", always_2d=True)
        sliced = wav[round(window[0] * sr) : round(window[1] * sr)].T
        expected = tokenizer.encode_audio(sliced, sr)
        np.testing.assert_array_equal(s["codes.npy"], expected.codes)
        assert s["json"]["start_s"] == window[0] and abs(s["json"]["duration"] - (window[1] - window[0])) < 1e-3


def test_window_reads_the_same_samples_as_slicing(imported):
    for item in (imported["musiccaps"][1]["abcDEF_-123"], imported["audiocaps"][1]["longvideo01_5"]):
        whole, sr = sf.read(item["audio"], dtype="float32", always_2d=True)
        wav, rate = read_window(item["audio"], (item["start_s"], item["end_s"]))
        assert rate == sr and wav.shape == (1, round((item["end_s"] - item["start_s"]) * sr))
        np.testing.assert_array_equal(wav, whole[round(item["start_s"] * sr) : round(item["end_s"] * sr)].T)
    whole, sr = sf.read(item["audio"], dtype="float32", always_2d=True)
    tail, _ = read_window(item["audio"], (len(whole) / sr - 1.25, len(whole) / sr + 30))  # clipped at the end
    np.testing.assert_array_equal(tail, whole[len(whole) - round(1.25 * sr) :].T)
    with pytest.raises(ValueError, match="outside the file"):
        read_window(item["audio"], (len(whole) / sr + 1, len(whole) / sr + 11))


def test_included_audio_of_a_window_is_the_window(imported, tokenizer):
    import io

    item = imported["audiocaps"][1]["longvideo01_5"]
    members = encode_sample(tokenizer, "k", item, ShardConfig(include_audio=True))
    flac, sr = sf.read(io.BytesIO(members["k.flac"]), dtype="float32", always_2d=True)
    window, rate = read_window(item["audio"], (item["start_s"], item["end_s"]))
    assert sr == rate and flac.shape == window.T.shape
    np.testing.assert_allclose(flac, window.T, atol=1 / 32768)  # PCM_16


def test_window_past_the_end_is_skipped_and_reported(tokenizer_dir, real_audio_files, tmp_path):
    rows = [{"audio": str(real_audio_files[0]), "text": "too late", "start_s": 100, "end_s": 110, "id": "late"},
            {"audio": str(real_audio_files[0]), "text": "bad", "start_s": 3, "end_s": 2, "id": "bad"},
            {"audio": str(real_audio_files[0]), "text": "tiny", "start_s": 1, "end_s": 1.2, "id": "tiny"}]
    write_jsonl(tmp_path / "w.jsonl", rows)
    summary = shard_manifest(tmp_path / "w.jsonl", tokenizer_dir, tmp_path / "s", progress=False)
    assert summary["samples"] == 0 and summary["skipped"] == 3
    got = [r["reason"] for r in sorted(read_jsonl(tmp_path / "s" / "w-report.jsonl"), key=lambda r: r["line"])]
    assert "after the end of the file" in got[0] and "not a window" in got[1] and "too short" in got[2]


def test_cli_import_strict_and_stats(sets, shards, tokenizer_dir, tmp_path, capsys):
    from mmtok.cli import main

    source, audio_root, _ = sets["musiccaps"]
    out = tmp_path / "mc" / "{split}.jsonl"
    assert main(["data", "import", "musiccaps", str(source), "--audio-root", str(audio_root), "--out", str(out),
                 "--split", "train"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert '"train": 2' in printed and "1 of 3 row(s) left out (1 audio not found)" in printed
    assert (tmp_path / "mc" / "train.jsonl").exists() and not (tmp_path / "mc" / "test.jsonl").exists()
    manifest = read_jsonl(tmp_path / "mc" / "train.jsonl")
    assert not manifest[0]["audio"].startswith("/")  # relative to the manifest: moves with the data
    # --strict: fatal, with the list, and no manifest
    assert main(["data", "import", "musiccaps", str(source), "--audio-root", str(audio_root), "--out",
                 str(tmp_path / "strict.jsonl"), "--strict"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "2 of 5 rows without usable audio" in err and "missingYTID: audio not found" in err
    assert not (tmp_path / "strict.jsonl").exists() and (tmp_path / "strict.import-report.jsonl").exists()
    # a pattern of the user's, and one naming a field the format lacks
    assert main(["data", "import", "musiccaps", str(source), "--audio-root", str(audio_root), "--out",
                 str(tmp_path / "p.jsonl"), "--audio-pattern", "long/{ytid}.wav"]) == 0  # fmt: skip
    assert "1 of 5 row(s)" not in capsys.readouterr().out and len(read_jsonl(tmp_path / "p.jsonl")) == 1
    assert main(["data", "import", "musiccaps", str(source), "--audio-root", str(audio_root), "--out",
                 str(tmp_path / "p.jsonl"), "--audio-pattern", "{youtube_id}.wav"]) == 2  # fmt: skip
    assert "uses youtube_id" in capsys.readouterr().err
    # manifest statistics, with text tokens
    mixed = shards[0] / "mixed.jsonl"
    assert main(["data", "manifest-stats", str(mixed), str(tmp_path / "mc" / "train.jsonl"), "--tokenizer",
                 str(tokenizer_dir)]) == 0  # fmt: skip
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 11 and stats["tasks"] == {"caption": 9, "qa": 2} and stats["missing_audio"] == 0
    assert stats["words"]["captions"]["count"] == 2 + 3 + 1 + 5 + 5 + 1 + 2 and stats["text_tokens"]["answers"]["total"] > 0
    assert stats["clip_seconds"]["min"] == 2.0 and stats["audio_hours"] > 0
    # the loader statistics of shards still work as before
    assert main(["data", "stats", f"{shards[0] / 'shards.jsonl'}#imported", "--tokenizer", str(tokenizer_dir),
                 "--seq-len", "256", "--batch-size", "2", "--batches", "1"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["batches"] == 1


@pytest.mark.parametrize("fmt, name, text, error", [
    ("musiccaps", "musiccaps-public.csv", "ytid,start_s,end_s,audioset_positive_labels,aspect_list,author_id,"
     "is_balanced_subset,is_audioset_eval\nx,0,10,,[],1,False,False\n", r"musiccaps-public\.csv:1: missing column\(s\) caption"),
    ("musiccaps", "musiccaps-public.csv", ",".join(FORMATS["musiccaps"].COLUMNS) + '\nx,0,10,,"[\'a\']",ok,1,False,False\n'
     'y,0,10,,"[\'a\', oops]",ok,1,False,False\n', r"musiccaps-public\.csv:3: aspect_list is not a Python list literal"),
    ("musiccaps", "musiccaps-public.csv", ",".join(FORMATS["musiccaps"].COLUMNS) + "\nx,zero,10,,[],ok,1,False,False\n",
     r"musiccaps-public\.csv:2: start_s must be a number"),
    ("audiocaps", "test.csv", "audiocap_id,youtube_id,start_time,caption\n1,a,0,fine\n2,b,0,too,many,fields\n",
     r"test\.csv:3: 6 fields, the header has 4"),
    ("musicqa", "EvalMusicQA.json", '[\n  {"audio_name": "a.wav", "conversation": []},\n  {"audio_name": "b.wav"}\n]',
     r"EvalMusicQA\.json:3: missing field\(s\) conversation"),
    ("musicqa", "EvalMusicQA.json", '[\n  {"audio_name": "a.wav",\n   "conversation": [}\n]',
     r"EvalMusicQA\.json:3: not valid JSON"),
    ("musicinstruct", "MusicInstruct.json", '{"QA": [\n {"ytid": "a", "question": "q", "answer": "a"},\n'
     ' {"ytid": "b", "question": "q"}\n]}', r"MusicInstruct\.json:3: missing field\(s\) answer"),
    ("musicbench", "MusicBench_train.json", '{"location": "data/a.wav", "main_caption": "x"}\n{"main_caption": "y"}\n',
     r"MusicBench_train\.json:2: missing field\(s\) location"),
])  # fmt: skip
def test_malformed_files_name_file_and_line(fmt, name, text, error, tmp_path):
    (tmp_path / name).write_text(text)
    with pytest.raises(DatasetFormatError, match=error):
        import_dataset(fmt, tmp_path / name, tmp_path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_no_audio_at_all_is_an_error(sets, tmp_path):
    source, _, _ = sets["clotho"]
    with pytest.raises(MissingAudioError, match="no row has usable audio"):
        import_dataset("clotho", source, tmp_path, tmp_path / "out.jsonl")


def test_key_parsing():
    from mmtok.data.importers.common import parse_key

    cases = {"D minor": ("D", "minor"), "F# major": ("F#", "major"), "Bb": ("Bb", None), "Ebm": ("Eb", "minor"),
             "A:min": ("A", "minor"), "c♯ minor": ("C#", "minor"), "G flat major": ("Gb", "major"),
             ("Bb", "minor"): ("Bb", "minor"), "unknown": None, "": None, 5: None}  # fmt: skip
    for text, expected in cases.items():
        assert parse_key(list(text) if isinstance(text, tuple) else text) == expected, text
