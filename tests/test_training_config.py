"""The run config: presets, dotted overrides, type coercion, and clear errors for wrong configs."""

import re
import subprocess
import sys

import pytest

from mmtok.cli import main as mmtok_main
from mmtok.config import ConfigError, RunConfig, load_config
from mmtok.training.loop import plan_batches
from tests.fixtures.training import REPO

PRESETS = sorted((REPO / "configs").glob("*.yaml"))


def test_presets_load_with_the_sizes_their_names_say():
    names = {p.stem for p in PRESETS}
    assert {"tiny", "demo", "125m", "350m", "1b", "7b"} <= names
    vocab = 8000 + 32 + 4 * 1024  # a typical demo tokenizer: 8k pieces, specials, 4 codebooks
    sizes = {}
    for path in PRESETS:
        cfg = load_config(path)
        cfg.set_vocab_size(vocab)
        sizes[path.stem] = cfg.model.num_params() / 1e6
        assert cfg.data.seq_len <= cfg.model.max_seq_len, path
        plan_batches(cfg, world_size=1)  # the batch geometry is consistent
    assert sizes["tiny"] < 3
    assert 18 < sizes["demo"] < 32
    assert 100 < sizes["125m"] < 160 and 280 < sizes["350m"] < 420
    assert 900 < sizes["1b"] < 1300 and 6000 < sizes["7b"] < 7500


def test_overrides_are_coerced_to_field_types():
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        "model.n_layers=4", "optim.lr=3e-4", "train.max_steps=1e3", "train.compile=true",
        "wandb.tags=a,b", "tokenizer=/some/dir", "model.n_kv_heads=null", "train.out_dir=runs/x",
    ])  # fmt: skip
    assert cfg.model.n_layers == 4 and cfg.optim.lr == 3e-4 and cfg.train.max_steps == 1000
    assert cfg.train.compile is True and cfg.wandb.tags == ["a", "b"] and cfg.tokenizer == "/some/dir"
    assert cfg.model.n_kv_heads is None and cfg.train.out_dir == "runs/x"
    assert cfg.model.dim == 64  # untouched values come from the YAML
    assert isinstance(load_config(None), RunConfig)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lrr=1"], "unknown config key 'optim.lrr'; did you mean 'optim.lr'"),
        (["trian.max_steps=3"], "did you mean 'train'"),
        (["model.n_heads=3"], "n_heads=3 does not divide dim=64"),
        (["model.n_kv_heads=3"], "n_kv_heads=3 must be positive and divide n_heads=4"),
        (["train.max_steps=1.5"], "train.max_steps: expected an integer, got '1.5'"),
        (["train.compile=maybe"], "train.compile: expected true/false"),
        (["train.parallelism=tp"], "train.parallelism: 'tp' is not one of"),
        (["optim=3"], "optim: expected a mapping"),
        (["optim.lr=-1"], "optim.lr must be positive"),
        (["train.checkpoint_interval=0"], "train.checkpoint_interval must be positive"),
    ],
)
def test_wrong_configs_fail_with_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load_config(REPO / "configs" / "tiny.yaml", overrides)
    assert "tiny.yaml" in str(e.value)  # the error names the file


def test_override_without_value_is_refused():
    with pytest.raises(ConfigError, match="override 'optim.lr' is not of the form key=value"):
        load_config(None, ["optim.lr"])


def test_vocab_smaller_than_the_tokenizer_is_refused(tokenizer):
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["model.vocab_size=100"])
    with pytest.raises(ConfigError, match=f"vocab_size=100 is smaller than the tokenizer's {len(tokenizer)}"):
        cfg.set_vocab_size(len(tokenizer))
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    cfg.set_vocab_size(len(tokenizer))  # unset: taken from the tokenizer
    assert cfg.model.vocab_size == len(tokenizer)


def test_global_batch_is_the_same_on_any_world_size():
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["train.global_batch_size=16", "train.micro_batch_size=2"])
    for world, accum in ((1, 8), (2, 4), (4, 2), (8, 1)):
        plan = plan_batches(cfg, world)
        assert plan.grad_accum == accum and plan.micro_batch * plan.grad_accum * world == 16
    with pytest.raises(ConfigError, match="cannot be split into micro-batches of 2 on 3 rank"):
        plan_batches(cfg, 3)
    tokens = load_config(REPO / "configs" / "tiny.yaml", ["train.global_batch_tokens=4096", "data.seq_len=256"])
    assert plan_batches(tokens, 2).global_batch == 16


def test_cli_prints_the_resolved_config_and_reports_errors(tmp_path, capsys):
    assert mmtok_main(["train", str(REPO / "configs" / "tiny.yaml"), "optim.lr=5e-4", "--print-config"]) == 0
    assert "lr: 0.0005" in capsys.readouterr().out
    assert mmtok_main(["train", str(REPO / "configs" / "tiny.yaml"), "model.dimm=3"]) == 2
    assert "did you mean 'model.dim'" in capsys.readouterr().err
    assert mmtok_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # train/pretrain.py is the same command (what torchrun and slurm/pretrain.sh run).
    proc = subprocess.run([sys.executable, str(REPO / "train" / "pretrain.py"), str(REPO / "configs" / "tiny.yaml"),
                           "schedule.warmup=3"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "did you mean 'schedule.warmup_steps'" in proc.stderr


def test_presets_are_package_data_found_by_name_from_any_directory(tmp_path, monkeypatch):
    from mmtok.config import PRESETS_DIR, preset_names

    assert PRESETS_DIR.parent.name == "mmtok" and set(preset_names()) == {p.stem for p in PRESETS}
    monkeypatch.chdir(tmp_path)
    for spec in ("demo_small", "demo_small.yaml", "configs/demo_small.yaml"):
        assert load_config(spec).model.dim == 256, spec
    mine = tmp_path / "mine.yaml"
    mine.write_text("model:\n  dim: 32\n  n_heads: 2\n")
    assert load_config(mine).model.dim == 32  # an explicit path still works
    with pytest.raises(ConfigError, match="demo_smal does not exist: neither a file nor a shipped preset.*demo_small"):
        load_config("demo_smal")
    # The command, installed, from another directory: --config NAME or the positional form.
    for argv in (["--config", "demo_small"], ["demo_small"]):
        proc = subprocess.run([sys.executable, "-m", "mmtok", "train", *argv, "optim.lr=5e-4", "--print-config"],
                              cwd=tmp_path, capture_output=True, text=True, check=True)
        assert "lr: 0.0005" in proc.stdout and "dim: 256" in proc.stdout
    assert mmtok_main(["train", "--config", "tiny", "tiny"]) == 2  # a second config is not an override


def test_data_settings_come_from_the_sections_that_own_them():
    cfg = load_config("tiny", ["train.seed=5", "train.micro_batch_size=2"])
    assert (cfg.data.seq_len, cfg.data.batch_size, cfg.data.seed) == (cfg.model.max_seq_len, 2, 5)
    shorter = load_config("tiny", ["data.seq_len=128", "data.seed=9"])
    assert shorter.data.seq_len == 128 and shorter.data.seed == 9  # shorter rows / own data order: fine
    with pytest.raises(ConfigError, match=r"data\.seq_len=512 .*model\.max_seq_len=256"):
        load_config("tiny", ["data.seq_len=512"])
    with pytest.raises(ConfigError, match=r"data\.batch_size=3 .*train\.micro_batch_size=4"):
        load_config("tiny", ["data.batch_size=3"])
    # A RunConfig built in Python is resolved the same way before training.
    built = RunConfig()
    assert built.resolve().data.seq_len == built.model.max_seq_len
