# The README's two commands. Both do all set-up first (idempotent, see scripts/setup.sh).
.PHONY: setup setup-test demo test

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

# The main job on the embedded default: demo corpus -> codec -> task data -> tokenizer -> shards -> train
# (captions mixed with the other tasks) -> captions, answers, stamps, playlists, retrieval + report.
demo: setup
	.venv/bin/mmtok demo --out runs/demo $(ARGS)

# The test suite (what CI runs via .ci/run): lint and import order first, then pytest.
test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest tests $(ARGS)
