#!/usr/bin/env bash
# Prepare, on a CPU machine with the venv, what .ci/gpu_report.sh's pipeline steps read: SynthHO's
# test-seen images at HoNet's 128 px (the whole split and its first 1 and 32 grasps, one view
# each; about 45 MB), written to .gpu-cache. Rendering needs pybullet, which the GPU machines'
# image lacks; carry .gpu-cache with the report's call (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
MIHO_CACHE=$PWD/.gpu-cache $py - <<'PY'
from miho.train.picr_data import build_picr_data

for grasps in (None, 1, 32):
    data = build_picr_data("test-seen", views=1, size=128, grasps=grasps, workers=0, progress=False)
    print(f"test-seen, {len(data)} samples")
PY
du -sh .gpu-cache
