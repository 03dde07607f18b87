#!/usr/bin/env bash
# Wheels an offline GPU machine lacks (one with torch, transformers, peft, accelerate, einops, torchaudio).
#
#   bash benchmarks/device_wheels.sh             # here: download into the git-ignored wheels/ (~43 MB)
#   bash benchmarks/device_wheels.sh --install   # there (wheels/ copied): install into /tmp/synclora-site and
#                                                # print the PYTHONPATH / SYNCLORA_PARITY_SITE to export
#
# diffusers and PyAV for our backend; ltx-core/ltx-pipelines for the official side (installed by parity_ltx.py's
# ensure_side_env from the same folder with --wheels wheels). Versions are the project's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=wheels
PINS=(diffusers==0.42.1 av==18.1.0 ltx-core==1.0.0 ltx-pipelines==1.0.0)
if [[ "${1:-}" == "--install" ]]; then
  SITE=/tmp/synclora-site
  python3 -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$SITE" diffusers av
  echo "export PYTHONPATH=$SITE:$PWD SYNCLORA_PARITY_SITE=/tmp/synclora-parity"
  exit 0
fi
mkdir -p "$WHEELS"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "${PINS[@]}"
du -sh "$WHEELS"
