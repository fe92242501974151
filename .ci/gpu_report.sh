#!/usr/bin/env bash
# The GPU checks and benchmarks (issues 3, 11, 12: GeO, SIV, hand, recovery, PiCR, the pipeline and
# the whole test-seen evaluation) in one command, for a lent GPU machine (its image has torch, numpy
# and pytest; no venv is made). From the repository root, e.g. through the device tool:
#     bash .ci/gpu_report.sh        (COMMIT=<id> names the commit where the tree has no .git)
# Writes $OUT/gpu_report.md (without $OUT: _build/gpu_report.md): the GPU, the CUDA tests and
# the benchmark tables for README "On a GPU machine", each with the command that made it.
# At most 580 s (one device call may run 600 s): every step has its own time limit, so that one
# slow step cannot take the others down with it. DEVICE=cpu runs the same steps on the CPU.
# The pipeline steps (bench pipeline, evaluate) read SynthHO's images from .gpu-cache: prepare it
# here with `bash .ci/gpu_cache.sh` and carry it (the GPU image has no pybullet to render them).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-_build}
mkdir -p "$out"
report="$out/gpu_report.md"
export PYTHONPATH=. PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}

step() {  # step SECONDS COMMAND...: run it, its command and output into the report
  local limit=$1
  shift
  printf '\n## `%s`\n\n```text\n' "$*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tail -n 60
  local rc=${PIPESTATUS[0]}
  printf '```\nexit %s, %s s\n' "$rc" "$((SECONDS - t0))"
}

{
  echo "# GPU report, $(date -u '+%F %H:%M UTC'), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  $py -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|',
                              torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  step 100 $py -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_devices.py
  step 90 $py -m miho.cli bench geo --device "$dev" --batches 1,64,256,1024 --loop
  step 40 $py -m miho.cli bench siv --device "$dev" --batch 256
  step 20 $py -m miho.cli bench hand --device "$dev" --batch 4096
  step 70 $py -m miho.cli bench recovery --device "$dev"
  step 60 $py -m miho.cli bench picr --device "$dev" --config paper --batch 64 --amp
  step 30 $py -m miho.cli bench picr --device "$dev" --config small --batch 32
  export MIHO_CACHE=${MIHO_CACHE:-$PWD/.gpu-cache}
  step 70 $py -m miho.cli bench pipeline --device "$dev" --batches 1,32
  step 90 $py -m miho.cli evaluate --device "$dev" --split test-seen --views 1 --batch-size 128 --out "$out/evaluate-test-seen"
} | tee "$report"
