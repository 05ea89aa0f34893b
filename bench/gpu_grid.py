"""The paper grid on one GPU (issue #19, item 2): how many workers per card, whether
`torch.compile` pays for LeNet-5, and the paper protocol on MNIST + Fashion-MNIST timed end to
end (every method, 3 seeds, 50 epochs, the paper's hyper-parameters; goal <= 15 min on one H200).

Stages (`--stage`, comma list; default all three):
  steps   bare LeNet-5 training steps (batch 128, fwd + CE + bwd + SGD) in one process: eager vs
          torch.compile (default mode) vs torch.compile(mode="reduce-overhead", CUDA graphs)
  timing  one LeNet-5 epoch of standard / pgd-at / hybrid (paper protocol, MNIST) with 1, 2, 4,
          8 workers on the device, with and without `TrainConfig.compile`: each of the N
          workers trains the three methods in turn (2 epochs, epoch 2 reported), so the N
          epochs of a method run at the same time; images/s = N x train images / epoch time
  grid    `reproduce` of the paper protocol on MNIST + Fashion-MNIST with the timing stage's
          best worker count (or --grid-workers); the train and evaluation phases timed apart
          (from experiment.json's placements), per-method accuracies over the seeds

Everything goes to OUT/gpu_grid.json (and is printed). On a CUDA machine, from the repo root:

    python3 bench/gpu_grid.py --data-dir DATA --out "$OUT"          # or bash bench/gpu_grid.sh

On a machine without CUDA it refuses, unless --dry-run: then it runs a tiny version on the CPU
(2 epochs of 256 images for the timing, 1 epoch for a 3-method grid, no compile variants, no
CUDA graphs) to show the script works; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustlab.experiments.devices import Worker, placed_train, plan_workers
from robustlab.experiments.executors import run_on_workers
from robustlab.experiments.plan import plan_jobs
from robustlab.experiments.presets import (
    PAPER_EPS,
    STANDARD_EPS,
    DatasetPlan,
    EvalPlan,
    MethodPlan,
    Preset,
    get_preset,
)

TIMING_METHODS = ("standard", "pgd-at", "hybrid")
STAGES = ("steps", "timing", "grid")


@dataclass
class TimingJob:
    """What one worker trains in the timing stage: every method in turn, one seed."""

    name: str
    trains: list[dict[str, Any]]
    compile: bool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="holding mnist/ and fashion-mnist/")
    p.add_argument("--out", default="gpu-grid-out", help="folder for gpu_grid.json")
    p.add_argument("--work", default=None,
                   help="folder for the runs (default --out); the grid's report files are "
                        "copied to OUT/grid-report")
    p.add_argument("--device", default="cuda", help="the one card (default cuda)")
    p.add_argument("--stage", default=",".join(STAGES), help="comma list of " + ", ".join(STAGES))
    p.add_argument("--workers", default="1,2,4,8", help="worker counts the timing stage tries")
    p.add_argument("--compile", choices=("both", "off", "on"), default="both",
                   help="TrainConfig.compile variants the timing stage tries")
    p.add_argument("--timing-train-size", type=int, default=10000)
    p.add_argument("--grid-workers", type=int, default=None,
                   help="workers for the grid (default: the timing stage's best, else 4)")
    p.add_argument("--grid-eval", choices=("cpu", "paper"), default="cpu",
                   help="cpu: paper-cpu's evaluation (1,000 images, cheaper AutoAttack); "
                        "paper: the paper preset's (10,000 images, standard AutoAttack)")
    p.add_argument("--no-report", action="store_true", help="skip report.html of the grid")
    p.add_argument("--dry-run", action="store_true",
                   help="a tiny CPU version that only shows the script works")
    args = p.parse_args(argv)
    args.stages = [s.strip() for s in args.stage.split(",")]
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        p.error(f"--stage: unknown {bad}; expected a comma list of {', '.join(STAGES)}")
    try:
        args.worker_counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers: expected a comma list of integers, got {args.workers!r}")
    if min(args.worker_counts) < 1:
        p.error(f"--workers: expected integers >= 1, got {args.workers!r}")
    return args


def refuse_without_cuda(args: argparse.Namespace) -> None:
    """Exit 2 with a clear message on a machine without CUDA (unless --dry-run)."""
    if args.dry_run:
        args.device = "cpu"
        return
    if not torch.cuda.is_available():
        print("gpu_grid.py: CUDA is not available on this machine, so there is nothing to "
              "measure; run it on a GPU machine, or pass --dry-run for a tiny CPU version "
              "that only shows the script works", file=sys.stderr)
        sys.exit(2)


def check_data(args: argparse.Namespace) -> None:
    """Both datasets found before anything is computed (a missing one fails here)."""
    from robustlab.data import load_dataset

    for ds in ("mnist", "fashion-mnist"):
        load_dataset(ds, root=args.data_dir)


# --- the presets (built from the paper preset, nothing added to presets.py) -------------------

def grid_preset(args: argparse.Namespace) -> Preset:
    """The paper protocol on MNIST + Fashion-MNIST (LeNet-5): every method with the paper's
    hyper-parameters (the `paper` preset's), 3 seeds, 50 epochs; tiny under --dry-run."""
    paper = get_preset("paper")
    datasets = tuple(DatasetPlan(ds, "lenet5", (("paper", PAPER_EPS),
                                               ("standard", STANDARD_EPS[ds])))
                     for ds in ("mnist", "fashion-mnist"))
    ev = paper.eval if args.grid_eval == "paper" else get_preset("paper-cpu").eval
    preset = paper.replace(name="paper-gpu-mnist-fashion", datasets=datasets, headline="mnist",
                           eval=ev, description="The paper protocol on MNIST and "
                           "Fashion-MNIST (LeNet-5) on one GPU: every method, 3 seeds, 50 "
                           "epochs (bench/gpu_grid.py)",
                           budget_note=f"full training sets, 50 epochs, 3 seeds, the "
                                       f"{args.grid_eval} evaluation")
    if args.dry_run:
        preset = preset.replace(
            methods=tuple(m for m in paper.methods if m.method in TIMING_METHODS), seeds=(0,),
            epochs=1, train_size=256, val_size=100, eval=_tiny_eval())
    return preset


def _tiny_eval() -> EvalPlan:
    return EvalPlan(attacks=("fgsm", "pgd"), n=50, batch_size=50, curve_factors=(0.0, 1.0),
                    curve_n=20, audit=False, attack_options={"pgd": {"steps": 3}})


def timing_preset(args: argparse.Namespace, seeds: int) -> Preset:
    """MNIST at the paper budget, the three timed methods, `seeds` seeds, 2 epochs."""
    paper = get_preset("paper")
    return paper.replace(
        name="gpu-grid-timing", datasets=(DatasetPlan("mnist", "lenet5",
                                                      (("paper", PAPER_EPS),)),),
        methods=tuple(MethodPlan(m) for m in TIMING_METHODS), seeds=tuple(range(seeds)),
        epochs=2, train_size=256 if args.dry_run else args.timing_train_size,
        val_size=100 if args.dry_run else None)


# --- stage: bare steps -------------------------------------------------------------------------

def bare_steps(args: argparse.Namespace) -> dict[str, Any]:
    """ms per LeNet-5 training step (batch 128): eager, compile, reduce-overhead (CUDA only)."""
    from robustlab.data import load_dataset
    from robustlab.models import create_model

    device = torch.device(args.device)
    info = load_dataset("mnist", root=args.data_dir).info
    modes = ["eager"] if args.dry_run else ["eager", "default", "reduce-overhead"]
    out = {}
    for mode in modes:
        torch.manual_seed(0)
        model = create_model("lenet5", **info.model_kwargs()).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        fwd = model if mode == "eager" else torch.compile(model, mode=mode)
        x = torch.rand(128, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        steps = 20 if args.dry_run else 300
        t_first = _time_steps(fwd, opt, x, y, 10 if not args.dry_run else 3, mode, device)
        out[mode] = {"ms_per_step": 1000 * _time_steps(fwd, opt, x, y, steps, mode, device)
                     / steps, "warmup_s": t_first}
        print(f"bare step {mode}: {out[mode]['ms_per_step']:.3f} ms "
              f"(warm-up {t_first:.1f}s)", flush=True)
    return out


def _time_steps(fwd, opt, x, y, steps: int, mode: str, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(fwd(x), y).backward()
        opt.step()
    sync()
    return time.perf_counter() - t0


# --- stage: worker-count timing ----------------------------------------------------------------

def _timing_job(job: TimingJob, worker: Worker) -> str:
    """Train every method of `job` in turn on `worker`; their epoch times as JSON."""
    from robustlab.training import TrainConfig, train

    times = {}
    for fields in job.trains:
        cfg = TrainConfig.from_dict({**placed_train(fields, worker), "compile": job.compile},
                                    source=job.name)
        result = train(cfg, overwrite=True)
        times[cfg.method] = [m["epoch_time_s"] for m in result.metrics]
    return json.dumps({"worker": worker.index, "device": worker.device, "epochs_s": times})


def worker_timing(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Epoch 2 of each method with N workers at once, for every N and compile variant."""
    variants = {"both": (False, True), "off": (False,), "on": (True,)}[args.compile]
    if args.dry_run:
        variants = (False,)
    rows = []
    for compiled in variants:
        for n in args.worker_counts:
            rows.append(_time_workers(args, out / f"timing-c{int(compiled)}-w{n}", n, compiled))
    return {"rows": rows, "best": best_workers(rows)}


def _time_workers(args: argparse.Namespace, out: Path, n: int, compiled: bool
                  ) -> dict[str, Any]:
    jobs = plan_jobs(timing_preset(args, n), out, data_dir=args.data_dir, device=args.device)
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for job in jobs:
        by_seed.setdefault(job.train["seed"], []).append(job.train)
    work = [TimingJob(f"seed{s}", trains, compiled) for s, trains in sorted(by_seed.items())]
    pool = plan_workers((args.device,), n)
    lines: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    run_on_workers("local", work, _timing_job,
                   lambda i, job, line, w: lines.append(json.loads(line)), pool)
    wall = time.perf_counter() - t0
    n_train = jobs[0].train["train_size"] or 55000
    row: dict[str, Any] = {"workers": n, "compile": compiled, "wall_s": wall,
                           "threads": pool[0].threads, "n_train": n_train,
                           "workers_used": len({ln["worker"] for ln in lines}), "methods": {}}
    for method in TIMING_METHODS:
        second = [ln["epochs_s"][method][-1] for ln in lines]
        first = [ln["epochs_s"][method][0] for ln in lines]
        mean = statistics.mean(second)
        row["methods"][method] = {"epoch_s_mean": mean, "epoch_s_max": max(second),
                                  "first_epoch_s_mean": statistics.mean(first),
                                  "images_per_s": n * n_train / mean}
    print(f"timing workers={n} compile={compiled}: " + ", ".join(
        f"{m} {v['epoch_s_mean']:.2f}s/epoch ({v['images_per_s']:.0f} img/s total)"
        for m, v in row["methods"].items()) + f"  [wall {wall:.0f}s]", flush=True)
    return row


def best_workers(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The (workers, compile) that does one epoch of every timed method in the least device
    time: sum over methods of epoch time / workers."""
    if not rows:
        return None
    def cost(r):
        return sum(v["epoch_s_mean"] for v in r["methods"].values()) / r["workers"]
    best = min(rows, key=cost)
    return {"workers": best["workers"], "compile": best["compile"],
            "device_s_per_epoch_of_each_method": cost(best)}


# --- stage: the grid ----------------------------------------------------------------------------

def run_grid(args: argparse.Namespace, out: Path, workers: int) -> dict[str, Any]:
    from robustlab.experiments.runner import reproduce

    preset = grid_preset(args)
    t0 = time.time()
    reproduce(preset, out, workers=workers, data_dir=args.data_dir, device=args.device,
              overwrite=True, report=not args.no_report)
    total = time.time() - t0
    exp = json.loads((out / "experiment.json").read_text())
    placed = exp.get("placements", {})
    phase_end = {ph: max(p["finished_at"] for p in placed[ph].values()) for ph in placed}
    return {"preset": preset.name, "workers_per_device": workers, "device": args.device,
            "runs": len(exp["jobs"]), "epochs": preset.epochs, "seeds": list(preset.seeds),
            "eval": args.grid_eval, "wall_s": total,
            "train_phase_s": phase_end.get("trained", t0) - t0,
            "eval_phase_s": phase_end.get("evaluated", t0) - phase_end.get("trained", t0),
            "results": grid_results(out, exp)}


def grid_results(out: Path, exp: dict[str, Any]) -> dict[str, Any]:
    """Per dataset / method / budget: test accuracy and worst-case attack accuracy over the
    seeds (mean, min, max), and how many runs trained healthily."""
    groups: dict[str, dict[str, list]] = {}
    for job in exp["jobs"]:
        run = out / job["run_dir"]
        summary = json.loads((run / "summary.json").read_text())
        for ev in job["evals"]:
            result = json.loads((out / ev["path"]).read_text())
            key = f"{summary['dataset']}/{summary['method']}/{ev['label']}"
            g = groups.setdefault(key, {"test_acc": [], "worst": [], "healthy": []})
            g["test_acc"].append(summary["test_acc"])
            g["worst"].append(result["worst_case"]["acc"])
            g["healthy"].append(summary["health"] == "ok")
    return {k: {"n": len(g["test_acc"]), "healthy": sum(g["healthy"]),
                **{m: _spread(g[m]) for m in ("test_acc", "worst")}} for k, g in groups.items()}


def _spread(values: list) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "min": None, "max": None}
    return {"mean": statistics.mean(vals), "min": min(vals), "max": max(vals)}


def copy_report(grid: Path, dest: Path) -> None:
    """The grid's small result files next to gpu_grid.json (the runs stay in --work)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.html", "results.json", "results.csv", "experiment.json"):
        if (grid / name).is_file():
            shutil.copy2(grid / name, dest / name)


# --- main --------------------------------------------------------------------------------------

def machine(args: argparse.Namespace) -> dict[str, Any]:
    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    return {"card": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "cores": os.cpu_count(),
            "dry_run": args.dry_run, "device": args.device}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    refuse_without_cuda(args)
    check_data(args)
    out, work = Path(args.out), Path(args.work or args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(args), "stages": args.stages}
    print(json.dumps(report["machine"]), flush=True)
    path = out / "gpu_grid.json"

    def save() -> None:
        path.write_text(json.dumps(report, indent=2))

    if "steps" in args.stages:
        report["bare_steps"] = bare_steps(args)
        save()
    if "timing" in args.stages:
        report["timing"] = worker_timing(args, work)
        save()
    if "grid" in args.stages:
        best = (report.get("timing") or {}).get("best") or {}
        workers = args.grid_workers or best.get("workers") or (2 if args.dry_run else 4)
        report["grid"] = run_grid(args, work / "grid", workers)
        if work != out:
            copy_report(work / "grid", out / "grid-report")
        g = report["grid"]
        print(f"grid {g['preset']}: {g['runs']} runs on {report['machine']['card']} with "
              f"{workers} worker(s): {g['wall_s']:.0f}s total (train {g['train_phase_s']:.0f}s, "
              f"eval {g['eval_phase_s']:.0f}s)", flush=True)
        save()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
