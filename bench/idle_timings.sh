#!/usr/bin/env bash
# The speed figures that need an idle machine, in one run (issues #34 and #35): AWP's per-epoch
# overhead, the L1 AutoAttack against the original (pyautoattack), the minimum-norm attacks
# against adv-lib, Sparse-RS against Foolbox, HopSkipJump against ART and SPSA against
# torchattacks, each printing its time ratio. Refuses to start while the 1-minute load average
# says something else runs (two torch processes on 2 cores slow each other 10-20x); run it
# first thing on a fresh machine, nothing else alongside. Everything goes to ${OUT}, which must
# not hold files yet (an earlier run's are never overwritten).
# Usage, from the repo root:  ROBUSTLAB_DATA=/path/to/data bash bench/idle_timings.sh [STAGES]
#   STAGES: awp,l1,minnorm,sparse,blackbox (default: all five, in that order)
set -euo pipefail
OUT=${OUT:-idle-timings-out}
STAGES=${1:-awp,l1,minnorm,sparse,blackbox}
PY=${PY:-.venv/bin/python}
MAX_LOAD=${MAX_LOAD:-0.5}
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "idle_timings: $OUT already holds files (an earlier run's?); it is never overwritten:" \
       "move it away or name another folder with OUT=..." >&2
  exit 2
fi
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; then
  echo "idle_timings: the 1-minute load average is $load (> $MAX_LOAD): something else runs;" \
       "timings now would mean nothing" >&2
  exit 2
fi
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
{ date -u +%FT%TZ; git rev-parse --short HEAD; nproc; } > "$OUT/machine.txt"
case ",$STAGES," in *,awp,*)
  "$PY" bench/awp_overhead.py --repeats 3 --train-size 3000 --threads 1 | tee "$OUT/awp.txt" ;;
esac
case ",$STAGES," in *,l1,*)
  "$PY" bench/l1_autoattack_pair.py --n 200 --train-images 20000 --adv-epochs 2 --threads 1 \
      --out "$OUT/l1_pair.json" | tee "$OUT/l1_pair.txt" ;;
esac
case ",$STAGES," in *,minnorm,*)
  "$PY" bench/min_norm_vs_adv_lib.py --n 200 --threads 1 --out "$OUT/min_norm.json" \
      | tee "$OUT/min_norm.txt" ;;
esac
case ",$STAGES," in *,sparse,*)
  "$PY" bench/sparse_rs_check.py --n 200 --seeds 3 --threads 1 --out "$OUT/sparse.json" \
      | tee "$OUT/sparse.txt" ;;
esac
case ",$STAGES," in *,blackbox,*)
  "$PY" bench/black_box_check.py --n 100 --seeds 3 --spsa-n 200 --models cnn cnn-fgsm \
      --threads 1 --out "$OUT/black_box.json" | tee "$OUT/black_box.txt" ;;
esac
