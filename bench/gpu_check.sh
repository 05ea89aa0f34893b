#!/usr/bin/env bash
# The one prepared GPU check (device tool): installs nothing, runs the CUDA tests, prints
# throughput/epoch ratios and peak memory, writes everything under ${OUT:-gpu-out}/.
# Usage on the device machine, from the repo root:  bash bench/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
# CUDA code paths: bf16 autocast, channels_last, data on device, attacks on CUDA.
timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py \
    tests/test_data_batches.py -k "cuda or gpu" 2>&1 | tail -25 | tee "$OUT/gpu_tests.txt"
# robustlab's default (no cuDNN autotuning), then with autotuning as many users set it
timeout 150 python3 bench/gpu_bench.py --cudnn-benchmark off --out "$OUT/gpu_bench_off.json" \
    2>&1 | tee "$OUT/gpu_bench_off.txt"
timeout 150 python3 bench/gpu_bench.py --cudnn-benchmark on --out "$OUT/gpu_bench_on.json" \
    2>&1 | tee "$OUT/gpu_bench_on.txt"
