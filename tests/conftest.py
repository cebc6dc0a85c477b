"""Shared test set-up. Fixtures live in tests/fixtures/<area>.py, one module per area, and are
registered here; expensive ones (rendered music, fitted codec, built tokenizer, shards) are
session-scoped and built once per test session."""

import os

import torch

# Two cores: keep torch to one intra-op thread per test process so parallel workers don't fight.
torch.set_num_threads(int(os.environ.get("MMTOK_TEST_THREADS", "1")))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

pytest_plugins = [
    "tests.fixtures.audio",
    "tests.fixtures.tokenizer",
    "tests.fixtures.model",
    "tests.fixtures.checkpoint",
    "tests.fixtures.data",
    "tests.fixtures.training",
]
