"""`robustlab.evaluate(model, x, y, eps=..., attacks=...)`: one call for any `nn.Module`.

Like RobustBench's `benchmark` and AutoAttack's `run_standard_evaluation`, but returning every
attack's accuracy, the per-sample worst case and the full eval dict of `evaluate_model` (the
same numbers and JSON as `robustlab evaluate`). `eps` has no default: a budget that suits one
dataset (0.3 for MNIST) is wrong for another (8/255 for CIFAR-10).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import AttackError
from robustlab.attacks.inputs import check_images
from robustlab.attacks.norms import check_norm
from robustlab.common.checks import check_l2_budget, check_number, is_integer
from robustlab.common.device import resolve_device
from robustlab.common.threads import use_threads
from robustlab.evaluation import metrics as M
from robustlab.evaluation.evaluate import evaluate_model
from robustlab.evaluation.settings import (
    CURVE_ATTACK,
    EvalSettings,
    EvalSettingsError,
    default_attacks,
)
from robustlab.models.probe import check_model_on_data, input_dtype
from robustlab.models.user import UserModelError
from robustlab.registry import ATTACKS

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
             attacks: Sequence[str] | None = None, n: int | None = None,
             batch_size: int = 500, seed: int = 0, audit: bool = False, curve: bool = False,
             attack_options: dict[str, dict[str, Any]] | None = None,
             data_dir: str | None = None, device: str | torch.device | None = None,
             progress: bool = False, threads: int | str | None = None) -> RobustnessResult:
    """Attack `model` on `x` / `y` and return a `RobustnessResult`.

    Args:
        model: any `nn.Module` taking [0, 1] images `[N, C, H, W]` and returning logits `[N, K]`
            (put input normalisation inside it). Its train/eval modes are restored afterwards.
        x: images `[N, C, H, W]` in [0, 1] (a tensor or numpy array; integer arrays are not
            rescaled: divide 0-255 images by 255), or a dataset name ("mnist", "cifar10", ...)
            whose test split is used (`y` then None).
        y: int labels `[N]` (tensor or numpy array).
        eps: the threat-model radius in [0, 1] pixel units (<= 1 for linf; at l0 a whole
            number of pixels); norm "linf" | "l2" | "l1" | "l0" (case-insensitive: "Linf",
            "L2" and "inf" are accepted).
        attacks: registry names (`robustlab list attacks`); default (None) AutoAttack
            standard, at l1 apgd-ce and autoattack, at l0 sparse-rs and sparse-pgd.
        n: the first `n` samples only. audit / curve: also run the gradient-masking audit /
            the accuracy-vs-eps curve (off by default here: they cost several attacks more;
            linf / l2 only: asked for at l1 / l0 they are refused in one line).
        attack_options: per attack, keyword options, e.g. {"pgd": {"steps": 50}}.
        device: where to attack (default: the model's device; the model must be there).
            progress: report each attack on stderr as it runs.
        threads: torch CPU threads for this call, restored afterwards (an int, or "auto":
            the cores the load average leaves free, `common/threads.py`; default None
            leaves torch's setting alone).

    Every input is checked before any compute: bad settings or data (as on the command line:
    `n` beyond the samples, an L2 `eps` beyond sqrt(C*H*W), an `eps` / `norm` in
    `attack_options`) raise `EvalSettingsError`
    (a device without CUDA `DeviceError`), and the model is run once on a few of the images
    (`check_model_for_evaluation`): a model whose output is not float logits `[N, K]` with K
    >= the largest label + 1 (== the classes of a named dataset), or is nan/inf, does not
    depend on the input or (for gradient attacks) is not differentiable raises
    `UserModelError`. All are `ValueError`s with one-line messages, the same as the command
    line's (`robustlab evaluate --model`).
    """
    norm = check_norm(_norm_name(norm))
    attacks = default_attacks(norm, DEFAULT_ATTACKS) if attacks is None else attacks
    settings = EvalSettings(attacks=tuple(attacks), eps=_as_float("eps", eps), norm=norm, n=n,
                            batch_size=batch_size, seed=seed, audit=audit,
                            curve_attack=CURVE_ATTACK if curve else None,
                            attack_options=_options_copy(attack_options)).validate()
    device = _device(model, device)
    x, y, num_classes = _as_data(x, y, data_dir)
    _check_against_data(settings, x, "x" if num_classes is None else "the dataset")
    x = x.to(input_dtype(model))  # a float64 model sees float64 images
    check_model_for_evaluation(model, x, y, settings, num_classes=num_classes)
    with use_threads(threads, say=_warn) if threads is not None else contextlib.nullcontext():
        details = evaluate_model(model, x.to(device), y.to(device), settings,
                                 progress=progress)
    correct = {k: M.from_bits(v) for k, v in details["per_sample"]["correct"].items()}
    return RobustnessResult(
        n=details["n"], clean_acc=details["clean"]["acc"],
        robust_acc={k: v["acc"] for k, v in details["attacks"].items()},
        worst_case_acc=details["worst_case"]["acc"], correct=correct, details=details)


def _options_copy(options: Any) -> Any:
    """A copy of `attack_options` (None: {}); anything but a dict is left for
    `EvalSettings.validate` to refuse with its one line."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in options.items()}
    return options


def _check_against_data(settings: EvalSettings, x: Tensor, where: str) -> None:
    """The checks the command line makes against the data (`evaluation.runs`):
    `n` within the samples, an L2 budget within the image cube's diameter sqrt(C*H*W)."""
    if settings.n is not None and settings.n > len(x):
        raise EvalSettingsError(f"n: {settings.n} exceeds the {len(x)} samples of {where}; "
                                f"expected at most {len(x)} (or n=None for all of them)")
    if settings.norm == "l2":
        check_l2_budget("eps", settings.eps, x[0].numel(), where=where,
                        error=EvalSettingsError)


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _norm_name(norm: Any) -> Any:
    """Accept the spellings of other libraries: 2 / "2" -> "l2", inf / "inf" -> "linf"."""
    if is_integer(norm) or isinstance(norm, float):
        return {2: "l2", float("inf"): "linf"}.get(norm, norm)
    if isinstance(norm, str) and norm.strip().lower() in ("inf", "2"):
        return "linf" if norm.strip().lower() == "inf" else "l2"
    return norm


def _as_float(field: str, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    return float(check_number(field, value, expected="a number", error=EvalSettingsError))


def _as_data(x: Any, y: Any, data_dir: str | None) -> tuple[Tensor, Tensor, int | None]:
    """Images, labels and (for a named dataset) its number of classes, all checked."""
    if isinstance(x, str):
        if y is not None:
            raise EvalSettingsError(f"y: a dataset name ({x!r}) brings its own labels; pass "
                                    "y=None")
        from robustlab.data import load_dataset

        splits = load_dataset(x, data_dir)
        return splits.test.x, splits.test.y, splits.info.num_classes
    if y is None:
        raise EvalSettingsError("y: labels are required with image tensors")
    x, y = _as_tensor("x", x), _as_tensor("y", y)
    if not x.is_floating_point():
        raise EvalSettingsError(f"x: expected float images in [0, 1], got {x.dtype}; divide "
                                "0-255 images by 255")
    if x.dtype != torch.float32:
        x = x.float()  # float64 / half inputs: the attacks' arithmetic is float32
    if x.dim() < 2 or len(x) == 0:
        raise EvalSettingsError(f"x: expected a batch of images [N, C, H, W] with N >= 1, got "
                                f"shape {list(x.shape)}")
    try:
        check_images(x)
    except AttackError as err:
        raise EvalSettingsError(str(err)) from None
    if y.is_floating_point() or y.dtype == torch.bool:
        raise EvalSettingsError(f"y: expected integer class labels, got {y.dtype}")
    if y.dim() != 1 or len(y) != len(x):
        raise EvalSettingsError(f"y: expected shape [{len(x)}] (one label per image), got "
                                f"{tuple(y.shape)}")
    if int(y.min()) < 0:
        raise EvalSettingsError(f"y: expected class labels >= 0, got {int(y.min())}")
    return x, y.long(), None


def _as_tensor(field: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if type(value).__module__ == "numpy":
        return torch.from_numpy(value)
    raise EvalSettingsError(f"{field}: expected a torch tensor or numpy array, got a "
                            f"{type(value).__name__}")


def check_model_for_evaluation(model: nn.Module, x: Tensor, y: Tensor,
                               settings: EvalSettings, *, num_classes: int | None) -> None:
    """Run `model` once on the first images of `x` and raise `UserModelError` unless it
    returns finite float logits `[N, K]` that depend on the input, with K == `num_classes`
    (a dataset's) or, when that is None, K >= the largest of the labels evaluated + 1, and
    (when a gradient attack, the curve or the audit will run) differentiable in the input.
    `robustlab.evaluate` and `robustlab evaluate --model` both call it, before any compute."""
    if not isinstance(model, nn.Module):
        raise UserModelError(f"model: expected a torch.nn.Module, got a {type(model).__name__}")
    n = min(settings.n or len(x), len(x))
    classes = num_classes if num_classes is not None else int(y[:n].max()) + 1
    check_model_on_data(model, x[:n], num_classes=classes, exact=num_classes is not None,
                        depends_on_x=True, needs_gradient=_needs_gradient(settings))


def _needs_gradient(settings: EvalSettings) -> bool:
    """Whether any attack that will run (the audit's included) differentiates the model."""
    if settings.audit:
        return True
    names = [*settings.attacks, *([settings.curve_attack] if settings.curve_attack else [])]
    return any(ATTACKS.get(name).gradient_based for name in names)


def _device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """`device` checked (it exists here; the model is on it), else the model's device."""
    if not isinstance(model, nn.Module):
        raise UserModelError(f"model: expected a torch.nn.Module, got a {type(model).__name__}")
    if device is None:
        return _model_device(model)
    wanted, actual = resolve_device(str(device)), _model_device(model)
    same_index = wanted.index is None or actual.index is None or wanted.index == actual.index
    if next(iter(model.parameters()), None) is not None and (
            actual.type != wanted.type or not same_index):
        raise EvalSettingsError(f"device: {str(device)!r} given, but the model is on {actual}; "
                                f"move it there first (model.to({str(device)!r})) or leave "
                                "device out")
    return wanted


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
