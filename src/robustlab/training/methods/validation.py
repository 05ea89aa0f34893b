"""Validation measurements made by methods during training, and what they feed.

- `ValProbe`: clean and adversarial accuracy on a fixed validation subset under the registry's
  evaluation attack (PGD, `steps` steps at a given eps, step 2.5 eps / steps, seeded; at l1,
  where the registry's PGD has no L1 version, APGD-CE at l1 with `steps` steps, seeded), plus
  an FGSM accuracy when the catastrophic-overfitting guard needs it (at l1 one sparse L1
  step, `perturb.fgsm`).
- `adaptive_alpha`: the paper's weight a = acc_adv / (acc_adv + acc_clean) (0.5 if both are 0).
- `OverfitGuard`: flags catastrophic overfitting of single-step training.

All of it runs inside the timed epoch (`end_epoch`), so its cost counts as training time.
"""

from __future__ import annotations

import warnings

from torch import Tensor, nn
from tqdm import tqdm

from robustlab.attacks import create_attack
from robustlab.common.inference import accuracy, predict_logits
from robustlab.common.modes import eval_mode
from robustlab.common.vocabulary import FLAG_OVERFIT, OVERFIT_GAP
from robustlab.training.methods.perturb import fgsm


class ValProbe:
    """Accuracy measurements on the first `samples` images of the validation split.

    `batch` bounds how many images are attacked at once (memory); `seed` makes the PGD
    random starts identical at every measurement.
    """

    def __init__(self, x: Tensor, y: Tensor, *, norm: str, steps: int, batch: int,
                 seed: int) -> None:
        self.x, self.y = x, y
        self.norm, self.steps, self.batch, self.seed = norm, steps, batch, seed

    @classmethod
    def from_split(cls, split, samples: int, **kw) -> ValProbe:
        if len(split) == 0:
            raise ValueError("val_size: this method measures validation accuracy every epoch "
                             "and needs a validation split; got val_size = 0")
        n = min(samples, len(split))
        return cls(split.x[:n], split.y[:n], **kw)

    def clean_acc(self, model: nn.Module) -> float:
        return accuracy(model, self.x, self.y, self.batch)

    def pgd_acc(self, model: nn.Module, eps: float) -> float:
        """Accuracy under PGD-`steps` at `eps` (the registry attack, step 2.5 eps / steps; at
        l1 APGD-CE, `steps` steps)."""
        if self.norm == "l1":
            attack = create_attack("apgd-ce", eps=eps, norm="l1", steps=self.steps,
                                   seed=self.seed)
        else:
            attack = create_attack("pgd", eps=eps, norm=self.norm, steps=self.steps,
                                   step_size=2.5 * eps / self.steps, seed=self.seed)
        correct = 0
        for i in range(0, len(self.x), self.batch):
            xb, yb = self.x[i: i + self.batch], self.y[i: i + self.batch]
            x_adv = attack(model, xb, yb)
            correct += int((predict_logits(model, x_adv, self.batch).argmax(1)
                            == yb.to(x_adv.device)).sum())
        return correct / len(self.x)

    def fgsm_acc(self, model: nn.Module, eps: float) -> float:
        """Accuracy under plain FGSM at `eps` (eval mode)."""
        correct = 0
        with eval_mode(model):
            for i in range(0, len(self.x), self.batch):
                xb, yb = self.x[i: i + self.batch], self.y[i: i + self.batch]
                x_adv = fgsm(model, xb, yb, eps, self.norm)
                correct += int((predict_logits(model, x_adv, self.batch).argmax(1)
                                == yb).sum())
        return correct / len(self.x)


def adaptive_alpha(acc_clean: float, acc_adv: float) -> float:
    """The paper's weight on the clean loss: acc_adv / (acc_adv + acc_clean); 0.5 if both 0."""
    total = acc_adv + acc_clean
    return 0.5 if total <= 0 else acc_adv / total


class OverfitGuard:
    """Catastrophic-overfitting detector for single-step adversarial training.

    Once training runs at the target eps, an epoch is flagged when validation FGSM accuracy
    exceeds validation PGD accuracy by more than `gap` (the classic signature: the model beats
    the attack it trains on but not a multi-step one; healthy adversarially trained models keep
    the two within a few points), or when PGD accuracy fell below `floor` while FGSM accuracy
    is still >= `fgsm_high`. At any budget, an epoch is flagged when validation PGD accuracy
    dropped by more than `drop` (absolute) from its best so far. FGSM accuracy (one gradient
    pass per image, a tenth of the PGD-10 probe) is measured at every epoch at the target.
    At norm l1 only the drop rule applies: one sparse L1 step is no yardstick of a multi-step
    attack there (measured: an L1-trained hybrid LeNet-5 at eps 10, whose APGD-L1-10
    accuracy still rose the next epoch, kept 84.5 % of 200 validation images under one step
    and 64.5 % under APGD-L1-10; docs/methods.md, "Recipe mnist-l1").
    """

    def __init__(self, drop: float = 0.3, floor: float = 0.05, fgsm_high: float = 0.5,
                 gap: float = OVERFIT_GAP) -> None:
        self.drop, self.floor, self.fgsm_high, self.gap = drop, floor, fgsm_high, gap
        self.best: float | None = None

    def check(self, pgd_acc: float, fgsm_acc_fn, *, method: str, epoch: int,
              at_target: bool = True, norm: str = "linf") -> dict:
        """Test this epoch's validation PGD accuracy; returns the values to log.

        `at_target=False` (the training budget is still below the target eps) skips the FGSM
        tests: a model trained at a smaller eps legitimately resists FGSM at the target eps much
        better than PGD without having overfitted.
        """
        logs: dict = {}
        collapsed = self.best is not None and self.best - pgd_acc > self.drop
        if at_target and norm != "l1":
            logs["val_fgsm_acc"] = fgsm_acc = fgsm_acc_fn()
            collapsed = (collapsed or fgsm_acc - pgd_acc > self.gap
                         or (pgd_acc < self.floor and fgsm_acc >= self.fgsm_high))
        self.best = pgd_acc if self.best is None else max(self.best, pgd_acc)
        logs[FLAG_OVERFIT] = bool(collapsed)
        if collapsed:
            msg = (f"{method}: catastrophic overfitting suspected in epoch {epoch + 1}: "
                   f"validation PGD accuracy {pgd_acc:.3f} (best {self.best:.3f}"
                   + (f", FGSM {logs['val_fgsm_acc']:.3f}" if "val_fgsm_acc" in logs else "")
                   + (("). Remedies: --opt generator=pgd with more --opt steps, or a longer "
                       "--eps-warmup.") if norm == "l1" else
                      ("). Remedies: --opt generator=fgsm-rs (random start, step 1.25 eps) or "
                       "--opt generator=n-fgsm (de Jorge et al. 2022).")))
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            tqdm.write(msg)
        return logs

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
