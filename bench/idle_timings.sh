#!/usr/bin/env bash
# The speed figures that need an idle machine, in one run (issues #34 and #35): AWP's per-epoch
# overhead, the L1 AutoAttack against the original (pyautoattack) and the minimum-norm attacks
# against adv-lib, each printing its ratio. Refuses to start while the 1-minute load average
# says something else runs (two torch processes on 2 cores slow each other 10-20x); run it
# first thing on a fresh machine, nothing else alongside. Everything goes to ${OUT}.
# Usage, from the repo root:  ROBUSTLAB_DATA=/path/to/data bash bench/idle_timings.sh [STAGES]
#   STAGES: awp,l1,minnorm (default: all three, in that order)
set -euo pipefail
OUT=${OUT:-idle-timings-out}
STAGES=${1:-awp,l1,minnorm}
PY=${PY:-.venv/bin/python}
MAX_LOAD=${MAX_LOAD:-0.5}
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
