"""Validation FGSM vs PGD accuracy of finished runs: the catastrophic-overfitting guard's
signature (`co_gap`, training/methods/validation.py), measured with each run's own probe
settings (its `val_samples` / `val_steps` method options, else the defaults 1,000 / 10) at its
final weights. The numbers docs/methods.md quotes for the choice of `co_gap` = 0.15.

    python bench/overfit_gap.py EXPERIMENT [EXPERIMENT ...] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from robustlab.common.files import read_json
from robustlab.runs.load import load_run
from robustlab.training.methods.validation import ValProbe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for root in args.experiments:
        for run in sorted(p.parent for p in (root / "runs").glob("*/config.json")):
            train = read_json(run / "config.json")["train"]
            if not train.get("eps") or train.get("method") == "standard":
                continue
            r = load_run(run, device="cpu")
            opts = r.cfg.method_options
            probe = ValProbe.from_split(r.data.val, opts.get("val_samples", 1000),
                                        norm=r.cfg.norm, steps=opts.get("val_steps", 10),
                                        batch=500, seed=r.cfg.seed)
            fgsm, pgd = probe.fgsm_acc(r.model, r.cfg.eps), probe.pgd_acc(r.model, r.cfg.eps)
            print(f"{run.name:56s} probe PGD-{probe.steps} on {len(probe.x)}: "
                  f"fgsm {fgsm:.3f} pgd {pgd:.3f} gap {fgsm - pgd:.3f}", flush=True)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
