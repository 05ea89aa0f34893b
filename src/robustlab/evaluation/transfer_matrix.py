"""The transferability matrix: accuracy of every target model on adversarial examples crafted
on every source model (issue #18), plus a leave-one-out ensemble source per target.

Pure compute on models and tensors (the `robustlab transfer` command, experiments/
transfer_study.py, loads the runs and writes the file). Adversarial examples are crafted ONCE
per (attack, source) and reused for every target. The crafting attacks return each sample's
highest-loss iterate (`stop_on_success=False`, the transfer attack's strong setting,
attacks/transfer.py), not the first iterate across the source's boundary. The diagonal is the
white-box attack on the model itself.

A sample counts as robust for a target only if the target classifies both the clean image and
the transferred one correctly (as the `transfer` attack keeps the clean input of a sample the
target already gets wrong), so no entry exceeds the target's clean accuracy.

Ensemble source: the mean of the LOGITS of every model except the target (leave-one-out);
with two models it is the other model, whose examples are reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import create_attack
from robustlab.common.vocabulary import TRANSFER_ATTACKS
from robustlab.evaluation.settings import require_eps

ENSEMBLE_RULE = "mean of the logits of every model except the target (leave-one-out)"

Progress = Callable[[str], None]


class LogitEnsemble(nn.Module):
    """The mean of its members' logits `[N, K]`; each member takes the same [0, 1] images
    (its own normalisation inside)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


@dataclass(frozen=True)
class TransferSettings:
    """The threat model and crafting attack: `eps` in [0, 1] pixel units (required, no default
    suits every dataset: `settings.require_eps`), `steps` iterations, `batch_size` images per
    crafting pass, `seed` of the attacks' random start."""

    attacks: tuple[str, ...] = TRANSFER_ATTACKS
    eps: float | None = None  # required: __post_init__ refuses None
    norm: str = "linf"
    steps: int = 20
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        require_eps(self.eps, "TransferSettings")


def build_crafter(name: str, settings: TransferSettings) -> Any:
    """The crafting attack `name` (pgd or mifgsm; default step sizes) with the highest-loss
    iterate. Raises AttackError on a bad setting."""
    return create_attack(name, eps=settings.eps, norm=settings.norm, steps=settings.steps,
                         seed=settings.seed, stop_on_success=False)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Predicted labels `[N]` (int64) of `model` on images `x` `[N, C, H, W]`, in batches."""
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def craft(attack: Any, source: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """Adversarial examples `[N, C, H, W]` crafted on `source` in batches of `batch_size`."""
    return torch.cat([attack(source, x[i:i + batch_size], y[i:i + batch_size])
                      for i in range(0, len(x), batch_size)])


def _acc(correct: Tensor) -> float:
    return float(correct.float().mean())


def transfer_matrix(models: dict[str, nn.Module], x: Tensor, y: Tensor,
                    settings: TransferSettings, *, ensemble: bool = True,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Accuracy of each target on each source's adversarial examples.

    `models`: name -> model in eval mode (at least 2, on x's device); `x` `[N, C, H, W]` in
    [0, 1], `y` `[N]`. Returns {"models": names, "clean_acc": {name: acc}, "attacks": {attack:
    {"matrix": [[acc]] rows = sources, cols = targets (fractions in [0, 1]), "ensemble":
    [acc per target] or None, "source_seconds": [s per source], "ensemble_seconds": s}}}.
    """
    names = list(models)
    y = y.to(x.device)
    clean = {n: predict(m, x, settings.batch_size) == y for n, m in models.items()}
    out: dict[str, Any] = {"models": names, "clean_acc": {n: _acc(c) for n, c in clean.items()},
                           "attacks": {}}
    for name in settings.attacks:
        attack = build_crafter(name, settings)
        out["attacks"][name] = _one_attack(attack, name, models, x, y, clean, settings,
                                           ensemble=ensemble, progress=progress)
    return out


def _robust(model: nn.Module, x_adv: Tensor, y: Tensor, clean: Tensor, batch: int) -> float:
    """Fraction of samples the target gets right both clean and after the transfer."""
    return _acc(clean & (predict(model, x_adv, batch) == y))


def _one_attack(attack: Any, name: str, models: dict[str, nn.Module], x: Tensor, y: Tensor,
                clean: dict[str, Tensor], settings: TransferSettings, *, ensemble: bool,
                progress: Progress | None) -> dict[str, Any]:
    """The matrix and ensemble row of one crafting attack."""
    names, bs = list(models), settings.batch_size
    matrix, seconds, crafted = [], [], {}
    for src in names:
        start = time.perf_counter()
        x_adv = craft(attack, models[src], x, y, bs)
        seconds.append(time.perf_counter() - start)
        crafted[src] = x_adv
        matrix.append([_robust(models[t], x_adv, y, clean[t], bs) for t in names])
        if progress:
            progress(f"{name}: crafted on {src} in {seconds[-1]:.1f}s")
    result = {"matrix": matrix, "source_seconds": seconds, "ensemble": None,
              "ensemble_seconds": None}
    if ensemble:
        start = time.perf_counter()
        result["ensemble"] = [_ensemble_entry(attack, t, models, x, y, clean[t], crafted, bs)
                              for t in names]
        result["ensemble_seconds"] = time.perf_counter() - start
        if progress:
            progress(f"{name}: leave-one-out ensembles in {result['ensemble_seconds']:.1f}s")
    return result


def _ensemble_entry(attack: Any, target: str, models: dict[str, nn.Module], x: Tensor,
                    y: Tensor, clean: Tensor, crafted: dict[str, Tensor], bs: int) -> float:
    """Accuracy of `target` on examples crafted on the logit mean of all the other models
    (one other model: its examples, already crafted)."""
    others = [n for n in models if n != target]
    if len(others) == 1:
        x_adv = crafted[others[0]]
    else:
        x_adv = craft(attack, LogitEnsemble([models[n] for n in others]).eval(), x, y, bs)
    return _robust(models[target], x_adv, y, clean, bs)
