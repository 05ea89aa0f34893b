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
