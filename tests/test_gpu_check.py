"""benchmarks/gpu_check.sh --dry-run: everything the GPU check does except CUDA, on tiny shapes."""

import json
import subprocess

import pytest

from tests.fixtures.training import REPO, subprocess_env

KEYS = {
    "attention": {"max_abs_diff_xformers_vs_sdpa_bf16", "max_abs_diff_xformers_vs_fp32", "max_abs_diff_sdpa_vs_fp32"},
    "fsdp_train": {"steps", "loss_first", "loss_last", "loss_fell", "any_nan", "tokens_per_s", "mfu",
                   "peak_flops_per_device", "max_memory_gib"},
    "hf_llama": {"tokens_per_s", "mfu", "ratio_mmtok_over_hf_tokens_per_s"},
    "compile": {"eager_tokens_per_s", "compiled_tokens_per_s", "ratio_compiled_over_eager",
                "first_steps_with_compilation_s", "graphs_compiled", "recompile_limit_hit"},
}


@pytest.mark.slow  # ~40 s on 2 cores (about 25 of them compiling a block with a cold inductor cache)
def test_gpu_check_dry_run_prints_every_key():
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=REPO, env=subprocess_env(2),
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    result = json.loads(out[out.index("{\n"):])  # gloo prints a line of its own before
    assert result["device"] == "cpu" and result["dry_run"] is True
    for section, keys in KEYS.items():
        assert keys <= set(result[section]), (section, keys - set(result[section]))
    assert result["ok"], result
    assert result["attention"]["max_abs_diff_xformers_vs_sdpa_bf16"] < 3e-2
    assert result["fsdp_train"]["loss_fell"] and not result["fsdp_train"]["any_nan"]
    assert result["compile"]["graphs_compiled"] <= 2 and not result["compile"]["recompile_limit_hit"]
