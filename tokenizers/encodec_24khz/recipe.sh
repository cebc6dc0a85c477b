#!/usr/bin/env bash
# Cluster tokenizer with pretrained EnCodec 24 kHz (mono, 75 Hz). 6 kbps = 8 codebooks:
# 600 audio tokens per second, frame-major (AnyGPT); SERIALIZATION=coarse_first|delay for another
# order. Offline clusters: put encodec_24khz-d7cc33bc.th in a directory and export
# MMTOK_ENCODEC_DIR=that/dir.
# Build time: 30-79 s wall, 17-27 s CPU (three runs; most of it two Python start-ups and the
# collapse check), measured 2026-11-30 on the code of a014519 with TEXT= the smoke corpus' 268
# captions and stand-in weights of the real architecture (the official file was not on the
# machine; load and check cost the same whatever the weights), on a 2-core VM whose load
# average was ~7 from another measurement. See docs/tokenizer.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TEXT="${TEXT:-runs/demo/corpus/captions.txt}"
VOCAB="${VOCAB:-8000}"
SERIALIZATION="${SERIALIZATION:-frame_major}"
[ -f "$TEXT" ] || mmtok data demo-corpus --out "$(dirname "$TEXT")" --size smoke
mmtok tokenizer build --text "$TEXT" --codec encodec_24khz --bandwidth 6 --vocab-size "$VOCAB" \
  --serialization "$SERIALIZATION" --out "$here/built" --overwrite
mmtok tokenizer inspect "$here/built"
