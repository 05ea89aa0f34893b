"""Method x {plain, +AWP, +EMA, +both} x seeds (issue #34): train, evaluate, print the table.

Every cell is measured, none is derived: each (method, AWP on/off, seed) is one `robustlab
train` run with the weight average on (`--ema`), which does not change training, so the run's
last weights are the "plain" / "+AWP" model and its averaged weights the "+EMA" / "+both" one.
Each weight set is evaluated by `robustlab evaluate` on the first `--images` test images:
clean, PGD-40 (the registry's `pgd`, 40 steps) and AutoAttack (standard, the original counts:
APGD-CE 100, APGD-T 9 x 100, FAB-T 9 x 100, Square 5,000), no audit, no curve.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/training_grid.py --out grid-mnist
    python bench/training_grid.py --dataset fashion-mnist --eps 0.1 --out grid-fmnist
    python bench/training_grid.py --table-only --out grid-mnist     # the table from results
    python bench/training_grid.py --epochs 15 --methods trades --no-awp --out grid-mnist-e15

Every run has `--epochs` (default 6) and the rest of the recipe, whose warm-up is a third of the
run, as is AWP's start (`--awp-warmup`); `--no-awp` trains only the runs without AWP. Runs are
resumable: a finished run or evaluation is skipped, a killed run continues with
`--resume`. `--weights last` evaluates the last weights only. `--jobs` training/evaluation
chains run at once, one thread each. A gain is "claimed" only when the difference of the seed
means is larger than the spread (max - min) of both cells' seeds; otherwise the table says "no
gain".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AWP_GAMMA = {"trades": 0.005}  # the AWP authors' TRADES-AWP value; 0.01 (AT-AWP) otherwise
VARIANTS = (("plain", False, "last"), ("+AWP", True, "last"),
            ("+EMA", False, "averaged"), ("+both", True, "averaged"))


def robustlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustlab", *args]


def run_name(method: str, awp: bool, seed: int) -> str:
    return f"{method}{'-awp' if awp else ''}-s{seed}"


def chain(args: argparse.Namespace, method: str, awp: bool, seed: int) -> None:
    """Train one run (or resume / skip it), then evaluate its last and averaged weights."""
    out = Path(args.out)
    run = out / "runs" / run_name(method, awp, seed)
    log = (out / "logs" / f"{run.name}.log").open("a")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not (run / "summary.json").is_file():
        cmd = robustlab("train", "--dataset", args.dataset, "--model", args.model, "--method",
                        method, "--eps", str(args.eps), "--epochs", str(args.epochs), "--seed",
                        str(seed), "--ema", str(args.ema), "--threads", "1", "--no-progress",
                        "--out", str(run))
        if awp:
            cmd += ["--awp", str(AWP_GAMMA.get(method, 0.01)), "--awp-warmup",
                    str(args.awp_warmup)]
        if run.exists():
            cmd.append("--resume")
        subprocess.run(cmd + args.train_args, check=True, stdout=log, stderr=log, env=env)
    for weights in args.weights:
        target = out / "evals" / f"{run.name}-{weights}.json"
        if target.is_file():
            continue
        cmd = robustlab("evaluate", str(run), "--attacks", "pgd,autoattack", "--attack-opt",
                        "pgd.steps=40", "--eps", str(args.eps), "--images", str(args.images),
                        "--no-audit", "--no-curve", "--no-progress", "--threads", "1",
                        "--run-weights", weights, "--out", str(target))
        subprocess.run(cmd, check=True, stdout=log, stderr=log, env=env)


def cell_values(out: Path, method: str, awp: bool, weights: str, seeds: list[int]) -> dict:
    rows = []
    for seed in seeds:
        name = run_name(method, awp, seed)
        f = out / "evals" / f"{name}-{weights}.json"
        if not f.is_file():
            continue
        ev = json.loads(f.read_text())
        summary = json.loads((out / "runs" / name / "summary.json").read_text())
        rows.append({"clean": 100 * ev["clean"]["acc"] if isinstance(ev["clean"], dict)
                     else 100 * ev["clean"],
                     "pgd40": 100 * ev["attacks"]["pgd"]["acc"],
                     "aa": 100 * ev["attacks"]["autoattack"]["acc"],
                     "train_s": summary["train_time_s"]})
    return {k: [r[k] for r in rows] for k in ("clean", "pgd40", "aa", "train_s")}


def fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def verdict(base: list[float], other: list[float]) -> str:
    if len(base) < 3 or len(other) < 3:
        return "fewer than 3 seeds"
    gain = sum(other) / len(other) - sum(base) / len(base)
    spread = max(max(base) - min(base), max(other) - min(other))
    if abs(gain) <= spread:
        return f"no gain ({gain:+.1f} within spread {spread:.1f})"
    return f"{'gain' if gain > 0 else 'loss'} {gain:+.1f} (spread {spread:.1f})"


def table(args: argparse.Namespace) -> str:
    out, seeds = Path(args.out), args.seeds
    lines = ["| method | variant | clean % | PGD-40 % | AutoAttack % | training s | "
             "AutoAttack vs plain |", "|---|---|---|---|---|---|---|"]
    for method in args.methods:
        base = cell_values(out, method, False, "last", seeds)
        for label, awp, weights in VARIANTS:
            cell = cell_values(out, method, awp, weights, seeds)
            vs = "" if label == "plain" else verdict(base["aa"], cell["aa"])
            lines.append(f"| {method} | {label} | {fmt(cell['clean'])} | {fmt(cell['pgd40'])} | "
                         f"{fmt(cell['aa'])} | {fmt(cell['train_s'], 0)} | {vs} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="lenet5")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--methods", nargs="+", default=["pgd-at", "trades", "hybrid"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6,
                   help="epochs of every run (default 6: the grid's cells so far; the rest of "
                   "the recipe follows, its warm-up a third of the run)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--awp-warmup", type=float, default=None,
                   help="epochs before AWP starts (default: a third of --epochs, the recipe's "
                   "budget warm-up; from the first step, gamma 0.01 kept LeNet-5 at the "
                   "constant classifier)")
    p.add_argument("--no-awp", action="store_true",
                   help="train the runs without AWP only (their +AWP / +both cells stay empty)")
    p.add_argument("--weights", nargs="+", choices=("last", "averaged"),
                   default=["last", "averaged"],
                   help="the weight sets evaluated (default both; `last` alone leaves the "
                   "+EMA / +both cells of these runs empty)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                   help="passed on to every robustlab train (last on the line)")
    args = p.parse_args()
    if args.awp_warmup is None:
        args.awp_warmup = round(args.epochs / 3, 6)
    out = Path(args.out)
    if not args.table_only:
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "evals").mkdir(parents=True, exist_ok=True)
        jobs = [(m, awp, s) for s in args.seeds for m in args.methods
                for awp in ((False,) if args.no_awp else (False, True))]
        # seed-major: every cell gets its first seed before any gets a second
        with ThreadPoolExecutor(args.jobs) as pool:
            for f in [pool.submit(chain, args, *job) for job in jobs]:
                f.result()
    print(table(args))


if __name__ == "__main__":
    main()
