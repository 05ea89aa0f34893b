"""Independent implementations robustlab's attacks are checked against (optional extra
`reference`: torchattacks, installed without its torchvision dependency)."""

from __future__ import annotations

from torch import nn


def torchattacks_autoattack(model: nn.Module, eps: float, *, n_classes: int = 10):
    """torchattacks' standard Linf AutoAttack components with the ORIGINAL counts (its own
    defaults use 10 APGD steps): APGD-CE 100, APGD-T 100 x 9 targets, FAB-T 100 x 9 targets,
    Square 5000 queries; each seeded 0. Call it as `suite(x, y)`."""
    import torchattacks

    return torchattacks.MultiAttack([
        torchattacks.APGD(model, eps=eps, norm="Linf", steps=100, n_restarts=1, loss="ce",
                          seed=0),
        torchattacks.APGDT(model, eps=eps, norm="Linf", steps=100, n_restarts=1,
                           n_classes=n_classes, seed=0),
        torchattacks.FAB(model, eps=eps, norm="Linf", steps=100, n_restarts=1,
                         multi_targeted=True, n_classes=n_classes, seed=0),
        torchattacks.Square(model, eps=eps, norm="Linf", n_queries=5000, n_restarts=1, seed=0),
    ])


def original_autoattack(model: nn.Module, eps: float, *, norm: str = "linf", seed: int = 0,
                        batch_size: int = 500):
    """The original AutoAttack of Croce & Hein (PyPI `pyautoattack`, the authors' code),
    version "standard" (APGD-CE, APGD-T, FAB-T, Square at their original counts), seeded.
    `norm`: "linf" | "l2" | "l1". Call it as `suite(x, y) -> x_adv` (`x` `[N, C, H, W]` in
    [0, 1])."""
    from pyautoattack import AutoAttack

    suite = AutoAttack(model, eps=eps, norm={"linf": "Linf", "l2": "L2", "l1": "L1"}[norm],
                       version="standard", seed=seed, device=next(model.parameters()).device)
    suite.verbose = False

    def run(x, y):
        return suite.run_standard_evaluation(x, y, batch_size=batch_size)[0]

    return run
