#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh machine (Debian/Ubuntu, Python 3.10-3.12):
#   - Debian packages: fluidsynth + General MIDI soundfonts (demo corpus), Java (METEOR),
#     and with --test also slurm-wlm + munge (the real one-node Slurm test).
#   - a virtual environment in .venv with mmtok installed editable, pinned deps from pyproject.toml.
# Re-running is cheap: each part is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small default-jre-headless)
[ $want_test = 1 ] && apt_pkgs+=(slurm-wlm slurmctld slurmd slurm-client munge)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=.venv/.mmtok-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f $stamp ] || [ "$(cat $stamp)" != "$want" ]; then
  echo "[setup] installing Python packages (first time: ~3 min, ~7.5 GB; torch 2.10.0 CUDA build runs on CPU too)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > $stamp
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, encodec, xformers; print("torch", torch.__version__, "xformers", xformers.__version__)')"
