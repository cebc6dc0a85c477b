#!/usr/bin/env bash
# Offline default: fit the `small` codec (16 kHz, hop 640 = 25 Hz, 8 x 1024 codes) on the demo
# corpus' training audio for MINUTES of CPU time (re-running resumes training), then build a
# tokenizer that keeps the first 2 codebooks: 50 audio tokens per second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CORPUS="${CORPUS:-runs/demo/corpus}"
TEXT="${TEXT:-$CORPUS/captions.txt}"
VOCAB="${VOCAB:-8000}"
MINUTES="${MINUTES:-10}"
CODEC="${CODEC:-runs/codecs/small}"  # fitted codec dir (runs/ is git-ignored); copied into the tokenizer
[ -f "$CORPUS/train.jsonl" ] || mmtok data demo-corpus --out "$CORPUS" --size smoke
mmtok codec fit --audio "$CORPUS/train.jsonl" --out "$CODEC" --preset small --minutes "$MINUTES"
mmtok tokenizer build --text "$TEXT" --codec "$CODEC" --n-codebooks 2 --vocab-size "$VOCAB" \
  --out "$here/built" --overwrite
mmtok tokenizer inspect "$here/built"
