"""`robustlab transfer RUN RUN [...]`: the transferability study (issue #18), written to
transfer-<dataset>-eps<E>.json (+ a heat map PNG beside it); docs/transfer.md.

Every check happens before any compute (as `robustlab evaluate` and `certify`): at least two
run folders of one dataset, the attacks, the budget (the runs' training eps when they agree,
else --eps), the counts, and no output file overwritten without --overwrite.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from robustlab.attacks import AttackError
from robustlab.common.checks import (
    check_choice,
    check_int,
    check_l2_budget,
    check_number,
    check_seed,
)
from robustlab.common.device import resolve_device
from robustlab.common.digest import with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json, read_json
from robustlab.common.vocabulary import ATTACK_NORMS, NORMS
from robustlab.common.vocabulary import TRANSFER_KIND as KIND
from robustlab.common.vocabulary import TRANSFER_SCHEMA as SCHEMA
from robustlab.evaluation.runs import claim_output
from robustlab.evaluation.transfer_matrix import (
    ENSEMBLE_RULE,
    TRANSFER_ATTACKS,
    TransferSettings,
    build_crafter,
    transfer_matrix,
)
from robustlab.runs.folder import RunFolder, RunFolderError


class TransferStudyError(ConfigError):
    """A bad argument of the transfer study (names the flag, the value and what is allowed)."""


@dataclass(frozen=True)
class RunInfo:
    """What the study records of one run folder (its config.json, read before any compute)."""

    path: str
    name: str
    method: str
    dataset: str
    model: str
    eps: float | None
    seed: int | None


def default_out(dataset: str, eps: float) -> Path:
    """transfer-<dataset>-eps<eps>.json in the current folder, e.g. transfer-mnist-eps0.3.json."""
    return Path(f"transfer-{dataset}-eps{eps:g}.json")


def read_runs(runs: list[str | Path]) -> list[RunInfo]:
    """Each run's facts from its config.json; at least two runs, one dataset, no run twice."""
    if not isinstance(runs, (list, tuple)) or len(runs) < 2:
        count = len(runs) if isinstance(runs, (list, tuple)) else runs
        raise TransferStudyError(f"RUN: expected at least 2 run folders (a source and a "
                                 f"target), got {count}")
    infos, seen = [], set()
    for run in runs:
        folder = RunFolder(Path(run))
        if not folder.path.is_dir():
            raise RunFolderError(f"run folder {folder.path} does not exist")
        key = folder.path.resolve()
        if key in seen:
            raise TransferStudyError(f"RUN: {run} is given twice; pass each run once")
        seen.add(key)
        cfg = folder.read_config()
        infos.append(RunInfo(str(run), "", str(cfg.get("method")), str(cfg.get("dataset")),
                             str(cfg.get("model")), cfg.get("eps"), cfg.get("seed")))
    datasets = sorted({i.dataset for i in infos})
    if len(datasets) > 1:
        listing = ", ".join(f"{i.path} ({i.dataset})" for i in infos)
        raise TransferStudyError(f"RUN: expected runs of one dataset, got {listing}")
    return _named(infos)


def _named(infos: list[RunInfo]) -> list[RunInfo]:
    """Labels for the matrix: the method; method + seed where methods repeat; the folder
    name where those repeat too."""
    def label(i: RunInfo) -> str:
        if [j.method for j in infos].count(i.method) == 1:
            return i.method
        return f"{i.method} s{i.seed}"

    labels = [label(i) for i in infos]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} ({Path(i.path).name})" for lab, i in zip(labels, infos, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [i.path for i in infos]
    return [RunInfo(**{**asdict(i), "name": lab}) for i, lab in zip(infos, labels, strict=True)]


def choose_eps(infos: list[RunInfo], eps: float | None, norm: str) -> float:
    """`eps` when given, else the training eps of the runs that had one, if they agree."""
    if eps is not None:
        high = 1.0 if norm == "linf" else None
        return check_number("--eps", eps, 0.0, high, low_open=True, error=TransferStudyError)
    trained = {i.eps for i in infos if i.eps is not None}
    if len(trained) == 1:
        return float(trained.pop())
    listing = ", ".join(f"{i.name}: {i.eps}" for i in infos)
    why = "differ" if trained else "are not recorded (no run was trained with a budget)"
    raise TransferStudyError(f"--eps: the runs' training budgets {why} ({listing}); pass the "
                             "budget to attack with, e.g. --eps 0.3")


def parse_attacks(attacks: Any) -> tuple[str, ...]:
    """A comma-separated string or a sequence of names -> a tuple of known crafting attacks."""
    names = ([a.strip() for a in attacks.split(",") if a.strip()] if isinstance(attacks, str)
             else list(attacks or ()))
    if not names:
        raise TransferStudyError(f"--attacks: expected a comma-separated list of "
                                 f"{', '.join(TRANSFER_ATTACKS)}, got {attacks!r}")
    for name in names:
        check_choice("--attacks", name, TRANSFER_ATTACKS, error=TransferStudyError)
    if len(set(names)) < len(names):
        raise TransferStudyError(f"--attacks: {','.join(names)} names an attack twice")
    return tuple(names)


def plan_study(runs: list[str | Path], *, out: str | Path | None, attacks: Any,
               eps: float | None, norm: str, steps: int, images: int, batch_size: int,
               seed: int, overwrite: bool, figure: bool
               ) -> tuple[list[RunInfo], TransferSettings, Path]:
    """(runs, settings, JSON path) after every check that needs no model; no compute."""
    infos = read_runs(runs)
    names = parse_attacks(attacks)
    norm = check_choice("--norm", str(norm).lower(), NORMS, error=TransferStudyError)
    if norm not in ATTACK_NORMS:  # l1 / l0: pgd and mifgsm do not craft at them
        raise TransferStudyError(f"--norm: expected one of {', '.join(ATTACK_NORMS)} (the "
                                 f"transfer attacks craft at no other norm), got {norm!r}")
    steps = check_int("--steps", steps, 1, error=TransferStudyError)
    check_int("--images", images, 1, error=TransferStudyError)
    batch_size = check_int("--batch-size", batch_size, 1, error=TransferStudyError)
    seed = check_seed("--seed", seed, error=TransferStudyError)
    settings = TransferSettings(attacks=names, eps=choose_eps(infos, eps, norm), norm=norm,
                                steps=steps, batch_size=batch_size, seed=seed)
    try:
        for name in names:
            build_crafter(name, settings)
    except AttackError as err:
        raise TransferStudyError(str(err)) from None
    path = Path(out) if out else default_out(infos[0].dataset, settings.eps)
    claim_output(path, overwrite=overwrite, is_ours=_is_transfer_file,  # a transfer JSON only
                 beside=[path.with_suffix(".png")] if figure else [])
    return infos, settings, path


def _is_transfer_file(path: Path) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def run_transfer_study(runs: list[str | Path], *, out: str | Path | None = None,
                       attacks: Any = TRANSFER_ATTACKS, eps: float | None = None,
                       norm: str = "linf", steps: int = 20, images: int = 1000,
                       batch_size: int = 500, seed: int = 0, device: str = "auto",
                       data_dir: str | None = None, overwrite: bool = False,
                       ensemble: bool = True, figure: bool = True, progress: bool = True
                       ) -> Path:
    """Attack the first `images` test images with each attack on each run and measure every
    run's accuracy on them (docs/transfer.md); write the JSON (schema robustlab.transfer/1)
    and, with `figure`, the heat map beside it. Returns the JSON's path."""
    from robustlab.runs.load import load_run

    infos, settings, path = plan_study(runs, out=out, attacks=attacks, eps=eps, norm=norm,
                                       steps=steps, images=images, batch_size=batch_size,
                                       seed=seed, overwrite=overwrite, figure=figure)
    dev = resolve_device(device)
    loaded = [load_run(i.path, device=str(dev), data_dir=data_dir) for i in infos]
    test = loaded[0].data.test
    if images > len(test):
        raise TransferStudyError(f"--images: {images} exceeds the {len(test)} test images of "
                                 f"{infos[0].dataset}; pass at most {len(test)}")
    if settings.norm == "l2":
        check_l2_budget("--eps", settings.eps, test.x[0].numel(), where=infos[0].dataset,
                        error=TransferStudyError)
    x, y = test.x[:images].to(dev), test.y[:images].to(dev)
    models = {i.name: lr.model for i, lr in zip(infos, loaded, strict=True)}
    say = (lambda text: print(f"  {text}", file=sys.stderr, flush=True)) if progress else None
    start = time.perf_counter()
    matrix = transfer_matrix(models, x, y, settings, ensemble=ensemble, progress=say)
    seconds = time.perf_counter() - start
    result = build_result(matrix, infos, settings, images=images, seconds=seconds,
                          device=str(dev), ensemble=ensemble)
    atomic_write_json(path, with_digest(result))  # the report checks its sha256
    print(format_summary(result, path))
    if figure:
        from robustlab.reporting.fig_transfer import write_transfer_figure

        print(f"  figure {write_transfer_figure(result, path.with_suffix('.png'))}")
    return path


def build_result(matrix: dict[str, Any], infos: list[RunInfo], settings: TransferSettings, *,
                 images: int, seconds: float, device: str, ensemble: bool) -> dict[str, Any]:
    """The transfer JSON (docs/transfer.md) from `transfer_matrix`'s output."""
    return {
        "schema": SCHEMA, "kind": KIND,
        "settings": {**asdict(settings), "attacks": list(settings.attacks), "images": images,
                     "iterate": "highest loss (stop_on_success=False)",
                     "step_size": {"pgd": "2.5 * eps / steps, random start",
                                   "mifgsm": "eps / steps, momentum 1.0"},
                     "ensemble": ENSEMBLE_RULE if ensemble else None,
                     "robust_if": "the target classifies the clean and the transferred image "
                                  "correctly"},
        "models": matrix["models"],
        "runs": [{"path": i.path, "name": i.name, "label": i.name, "method": i.method,
                  "eps": i.eps, "dataset": i.dataset, "model": i.model, "seed": i.seed}
                 for i in infos],
        "clean_acc": matrix["clean_acc"],
        "attacks": matrix["attacks"],
        "timing": {"seconds": seconds, "device": device,
                   "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
    }


def format_summary(result: dict[str, Any], path: Path) -> str:
    """The matrices as text: one block per attack, rows = sources, columns = targets (%)."""
    names = result["models"]
    width = max(12, *(len(n) for n in names)) + 2
    lines = [f"transfer study, eps={result['settings']['eps']:g} "
             f"({result['settings']['norm']}), {result['settings']['images']} images; "
             f"accuracy (%) of the target (column) on examples crafted on the source (row)"]
    head = "".join(n[:width - 1].rjust(width) for n in names)
    lines.append(f"{'clean':<{width}}" + "".join(
        f"{100 * result['clean_acc'][n]:.1f}".rjust(width) for n in names))
    for attack, block in result["attacks"].items():
        lines.append(f"{attack:<{width}}{head}")
        for src, row in zip(names, block["matrix"], strict=True):
            lines.append(f"{src[:width - 1]:<{width}}" + "".join(
                f"{100 * v:.1f}".rjust(width) for v in row))
        if block["ensemble"] is not None:
            lines.append(f"{'ensemble':<{width}}" + "".join(
                f"{100 * v:.1f}".rjust(width) for v in block["ensemble"]))
    lines.append(f"  {result['timing']['seconds']:.1f}s on {result['timing']['device']}; "
                 f"wrote {path}")
    return "\n".join(lines)
