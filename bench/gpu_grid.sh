#!/usr/bin/env bash
# The prepared device run of bench/gpu_grid.py (issue #19 item 2): the card, bare-step and
# worker-count timings, then the paper grid on MNIST + Fashion-MNIST; everything under
# ${OUT:-gpu-grid-out}/. Installs nothing. Needs the data: DATA=/path/holding/mnist/ and
# fashion-mnist/ (default: ROBUSTLAB_DATA, then robustlab's usual search).
# Usage on the device machine, from the repo root:  DATA=... bash bench/gpu_grid.sh [STAGES]
#   STAGES: steps,timing,grid (default); e.g. "steps,timing" then "grid" in a second call.
set -uo pipefail
OUT=${OUT:-gpu-grid-out}
STAGES=${1:-steps,timing,grid}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
DATA_ARGS=()
if [ -n "${DATA:-}" ]; then DATA_ARGS=(--data-dir "$DATA"); fi
# the runs stay in $WORK (not brought back); $OUT gets gpu_grid.json and grid-report/
timeout "${LIMIT_S:-3000}" python3 bench/gpu_grid.py --stage "$STAGES" --out "$OUT" \
    --work "${WORK:-/tmp/gpu-grid-work}" \
    "${DATA_ARGS[@]}" 2>&1 | tee "$OUT/gpu_grid.txt" | grep -v '^\[' 
