#!/usr/bin/env bash
# Tokenizer with pretrained EnCodec 48 kHz (stereo, 150 Hz, 1 s segments). 3 kbps = 2 codebooks;
# each segment's float32 scale is kept as 4 scale-byte tokens, so decode equals encodec's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TEXT="${TEXT:-runs/demo/corpus/captions.txt}"
VOCAB="${VOCAB:-8000}"
[ -f "$TEXT" ] || mmtok data demo-corpus --out "$(dirname "$TEXT")" --size smoke
mmtok tokenizer build --text "$TEXT" --codec encodec_48khz --bandwidth 3 --vocab-size "$VOCAB" \
  --out "$here/built" --overwrite
mmtok tokenizer inspect "$here/built"
