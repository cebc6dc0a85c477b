#!/usr/bin/env bash
# Default tokenizer with pretrained EnCodec 24 kHz (mono, 75 Hz). 1.5 kbps = 2 codebooks:
# 150 audio tokens per second, frame-major (AnyGPT). Offline clusters: put
# encodec_24khz-d7cc33bc.th in a directory and export MMTOK_ENCODEC_DIR=that/dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TEXT="${TEXT:-runs/demo/corpus/captions.txt}"
VOCAB="${VOCAB:-8000}"
[ -f "$TEXT" ] || mmtok data demo-corpus --out "$(dirname "$TEXT")" --size smoke
mmtok tokenizer build --text "$TEXT" --codec encodec_24khz --bandwidth 1.5 --vocab-size "$VOCAB" \
  --serialization frame_major --out "$here/built" --overwrite
mmtok tokenizer inspect "$here/built"
