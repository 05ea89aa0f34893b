"""`robustlab.evaluate(model, x, y, eps=..., attacks=...)`: one call for any `nn.Module`.

Like RobustBench's `benchmark` and AutoAttack's `run_standard_evaluation`, but returning every
attack's accuracy, the per-sample worst case and the full eval dict of `evaluate_model` (the
same numbers and JSON as `robustlab evaluate`). `eps` has no default: a budget that suits one
dataset (0.3 for MNIST) is wrong for another (8/255 for CIFAR-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.norms import check_norm
from robustlab.common.checks import check_number
from robustlab.evaluation import metrics as M
from robustlab.evaluation.evaluate import evaluate_model
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError

DEFAULT_ATTACKS = ("autoattack",)


@dataclass(frozen=True)
class RobustnessResult:
    """What `evaluate` measured on `n` samples.

    `clean_acc` and `robust_acc[attack]` are fractions in [0, 1]; `worst_case_acc` counts a
    sample robust only if it survives every attack (the per-sample worst case). `correct` holds
    bool tensors `[n]`: "clean", one per attack, and "worst_case". `details` is the full eval
    dict (schema in docs/evaluation.md), which `json.dump` writes as `robustlab evaluate` does.
    """

    n: int
    clean_acc: float
    robust_acc: dict[str, float]
    worst_case_acc: float
    correct: dict[str, Tensor]
    details: dict[str, Any]

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:.2%}" for k, v in self.robust_acc.items())
        return (f"n={self.n}: clean {self.clean_acc:.2%}, {parts}, "
                f"worst case {self.worst_case_acc:.2%}")


def evaluate(model: nn.Module, x: Any, y: Any = None, *, eps: float, norm: str = "linf",
             attacks: Sequence[str] = DEFAULT_ATTACKS, n: int | None = None,
             batch_size: int = 500, seed: int = 0, audit: bool = False, curve: bool = False,
             attack_options: dict[str, dict[str, Any]] | None = None,
             data_dir: str | None = None, device: str | torch.device | None = None,
             progress: bool = False) -> RobustnessResult:
    """Attack `model` on `x` / `y` and return a `RobustnessResult`.

    Args:
        model: any `nn.Module` taking [0, 1] images `[N, C, H, W]` and returning logits `[N, K]`
            (put input normalisation inside it). Its train/eval modes are restored afterwards.
        x: images `[N, C, H, W]` in [0, 1] (a tensor or numpy array; integer arrays are not
            rescaled: divide 0-255 images by 255), or a dataset name ("mnist", "cifar10", ...)
            whose test split is used (`y` then None).
        y: int labels `[N]` (tensor or numpy array).
        eps: the threat-model radius in [0, 1] pixel units (<= 1 for linf); norm "linf" | "l2"
            (case-insensitive: "Linf", "L2" and "inf" are accepted).
        attacks: registry names (`robustlab list attacks`); default AutoAttack standard.
        n: the first `n` samples only. audit / curve: also run the gradient-masking audit /
            the accuracy-vs-eps curve (off by default here: they cost several attacks more).
        attack_options: per attack, keyword options, e.g. {"pgd": {"steps": 50}}.
        device: where to attack (default: the model's device). progress: report each attack
            on stderr as it runs.
    """
    x, y = _as_data(x, y, data_dir)
    device = torch.device(device) if device is not None else _model_device(model)
    settings = EvalSettings(attacks=tuple(attacks), eps=_as_float("eps", eps),
                            norm=check_norm(_norm_name(norm)), n=n, batch_size=batch_size,
                            seed=seed, audit=audit, curve_attack="pgd" if curve else None,
                            attack_options=dict(attack_options or {})).validate()
    details = evaluate_model(model, x.to(device), y.to(device), settings, progress=progress)
    correct = {k: M.from_bits(v) for k, v in details["per_sample"]["correct"].items()}
    return RobustnessResult(
        n=details["n"], clean_acc=details["clean"]["acc"],
        robust_acc={k: v["acc"] for k, v in details["attacks"].items()},
        worst_case_acc=details["worst_case"]["acc"], correct=correct, details=details)


def _norm_name(norm: Any) -> Any:
    """Accept the spellings of other libraries: 2 / "2" -> "l2", inf / "inf" -> "linf"."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        return {2: "l2", float("inf"): "linf"}.get(norm, norm)
    if isinstance(norm, str) and norm.strip().lower() in ("inf", "2"):
        return "linf" if norm.strip().lower() == "inf" else "l2"
    return norm


def _as_float(field: str, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    return float(check_number(field, value, expected="a number", error=EvalSettingsError))


def _as_data(x: Any, y: Any, data_dir: str | None) -> tuple[Tensor, Tensor]:
    if isinstance(x, str):
        if y is not None:
            raise EvalSettingsError(f"y: a dataset name ({x!r}) brings its own labels; pass "
                                    "y=None")
        from robustlab.data import load_dataset

        test = load_dataset(x, data_dir).test
        return test.x, test.y
    if y is None:
        raise EvalSettingsError("y: labels are required with image tensors")
    x, y = _as_tensor("x", x), _as_tensor("y", y)
    if not x.is_floating_point():
        raise EvalSettingsError(f"x: expected float images in [0, 1], got {x.dtype}; divide "
                                "0-255 images by 255")
    if x.dtype != torch.float32:
        x = x.float()  # float64 / half inputs: the attacks' arithmetic is float32
    if y.is_floating_point() or y.dtype == torch.bool:
        raise EvalSettingsError(f"y: expected integer class labels, got {y.dtype}")
    if y.dim() != 1 or len(y) != len(x):
        raise EvalSettingsError(f"y: expected shape [{len(x)}] (one label per image), got "
                                f"{tuple(y.shape)}")
    return x, y.long()


def _as_tensor(field: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if type(value).__module__ == "numpy":
        return torch.from_numpy(value)
    raise EvalSettingsError(f"{field}: expected a torch tensor or numpy array, got a "
                            f"{type(value).__name__}")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
