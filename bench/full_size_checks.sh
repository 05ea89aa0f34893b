#!/usr/bin/env bash
# Issue #35's strength targets at full size (1,000 test images, 3 seeds where the attack is
# random) on models robustlab did not train, every script against its reference. Hours of
# CPU on one core each; every step resumes from its own JSON in ${OUT} after a kill (rerun
# the same command), and stages can run in parallel on separate cores (one thread each).
# Strength only: time the attacks with bench/idle_timings.sh on an idle machine.
# Usage, from the repo root:  ROBUSTLAB_DATA=/path/to/data bash bench/full_size_checks.sh [STAGES]
#   STAGES: l1-aa,l1-apgd,minnorm,sparse,blackbox (default: all, in that order)
set -euo pipefail
OUT=${OUT:-full-size-checks-out}
STAGES=${1:-l1-aa,l1-apgd,minnorm,sparse,blackbox}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
L1="--n 1000 --train-images 20000 --adv-epochs 2 --plain-epochs 2 --threads 1"
case ",$STAGES," in *,l1-aa,*)
  "$PY" bench/l1_autoattack_pair.py $L1 --seeds 0 1 2 --out "$OUT/l1_aa.json" \
      | tee -a "$OUT/l1_aa.txt" ;;
esac
case ",$STAGES," in *,l1-apgd,*)
  "$PY" bench/l1_autoattack_pair.py $L1 --attack apgd-ce --seeds 0 1 2 \
      --out "$OUT/l1_apgd.json" | tee -a "$OUT/l1_apgd.txt" ;;
esac
case ",$STAGES," in *,minnorm,*)
  [ -f "$OUT/min_norm.json" ] || "$PY" bench/min_norm_vs_adv_lib.py --n 1000 --threads 1 \
      --out "$OUT/min_norm.json" | tee "$OUT/min_norm.txt"
  # FMN with adv-lib's own step (box_aware=False): the two implementations must agree
  [ -f "$OUT/min_norm_adv_lib_step.json" ] || "$PY" bench/min_norm_vs_adv_lib.py --n 1000 \
      --threads 1 --adv-lib-step --out "$OUT/min_norm_adv_lib_step.json" \
      | tee "$OUT/min_norm_adv_lib_step.txt" ;;
esac
case ",$STAGES," in *,sparse,*)
  "$PY" bench/sparse_rs_check.py --n 1000 --seeds 3 --threads 1 --out "$OUT/sparse.json" \
      | tee -a "$OUT/sparse.txt" ;;
esac
case ",$STAGES," in *,blackbox,*)
  # HopSkipJump vs ART at full size; SPSA's pair (no strength target, only speed) stays at
  # bench/idle_timings.sh's 100 images: 1,000 images x 100 steps x 64 directions is hours.
  "$PY" bench/black_box_check.py --n 1000 --seeds 3 --models cnn cnn-fgsm --spsa-n 0 \
      --threads 1 --out "$OUT/black_box.json" | tee -a "$OUT/black_box.txt" ;;
esac
