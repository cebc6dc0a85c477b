#!/usr/bin/env bash
# Cluster tokenizer with pretrained EnCodec 48 kHz (stereo, 150 Hz, 1 s segments overlapping by
# 1%). 6 kbps = 4 codebooks; each segment's float32 scale is kept as 4 scale-byte tokens before
# its frames, so decode equals encodec's: (4 + 150 x 4) ids per 0.99 s = 610.1 audio tokens per
# second. SERIALIZATION=coarse_first|delay for another order (within each segment).
# Offline clusters: put encodec_48khz-7e698e3e.th in a directory and export MMTOK_ENCODEC_DIR.
# Build time: 31-53 s wall, 17-25 s CPU (three runs; most of it two Python start-ups and the
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
mmtok tokenizer build --text "$TEXT" --codec encodec_48khz --bandwidth 6 --vocab-size "$VOCAB" \
  --serialization "$SERIALIZATION" --out "$here/built" --overwrite
mmtok tokenizer inspect "$here/built"
