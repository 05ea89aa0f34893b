"""The `Attack` base class, the model as an attack sees it, and the ONE input-gradient routine.

How to write an attack
----------------------
1. Subclass `Attack`, register it, and implement `perturb`::

       from robustlab.registry import ATTACKS
       from robustlab.attacks.base import Attack, AttackModel

       @ATTACKS.register("my-attack")
       class MyAttack(Attack):
           def __init__(self, *, eps, norm="linf", steps=10, seed=0, **common):
               super().__init__(eps=eps, norm=norm, seed=seed, **common)
               self.steps = self.check_positive_int("steps", steps)

           def perturb(self, model, x, y, eps, target, generator):
               ...  # return x_adv, same shape as x, in [0, 1] and in the eps-ball

   `__init__` validates its own hyper-parameters (raise `AttackError`/ValueError naming the
   field, the value and what was expected) -- before any compute.

2. `Attack.__call__(model, x, y, target=None)` does everything generic, then calls `perturb`:
   validates inputs (`check_images`: finite float tensor in [0, 1]; `check_labels`: integer
   `[N]` labels in range; `target`), casts `x` to the model's dtype (`compute_dtype`: float64 /
   float16 / bfloat16 inputs work, the result comes back in x's dtype), checks the model
   returns logits `[N, K]` and their width against `min_classes` (one forward pass on one
   sample, cached per model), checks the attack's first forward pass for nan/inf logits
   (error) and softmax outputs (warning) without an extra pass, puts the
   model in eval mode and sets `requires_grad=False` on its parameters (restoring every
   submodule's mode and every flag afterwards), builds a fresh seeded
   `torch.Generator` (same seed -> same output), builds the per-sample eps tensor `[N]`, and
   finally projects the result onto the eps-ball ∩ [0, 1] (a no-op for a correct attack; it
   also returns `x` bit-exactly when eps = 0) and restores the caller's memory layout.

3. Inside `perturb`, talk to the model ONLY through the `AttackModel` it receives:
   - `model.logits(x)` -- a plain forward pass without autograd (`[N, K]`);
   - `model.gradient(x, y, loss_fn, target)` -> `Gradient(loss [N], logits [N, K], grad)`,
     the gradient of the per-sample `loss_fn` w.r.t. the INPUT only. This is where BPDA
     (models with `nondifferentiable = True`, via their `bpda_forward`) and EOT (models with
     `randomized = True`, averaged over `eot_iter` passes) are applied, so every gradient
     attack is adaptive for free. Parameters and their `.grad` are never touched.
   Losses (`robustlab.attacks.losses`) all have the signature
   `loss(logits, y, target) -> [N]` and are MAXIMISED (targeted ones use `target`).
   Use `generator` for all randomness (`torch.rand(..., generator=generator)`), and
   `robustlab.attacks.norms` for projections / steps / random starts (never per-norm classes).

4. Return the best iterate per sample, not the last one (`BestIterate` helps: a successful
   iterate beats any unsuccessful one, otherwise the higher loss wins). Freezing samples that
   are already adversarial is encouraged when it does not change the other samples' results
   (draw random numbers for the whole batch, then index).

5. Class attributes describe the attack to the generic code and the tests:
   `bounded` (output lies in the eps-ball; False e.g. for CW-L2, which ignores eps),
   `needs_eps`, `gradient_based`, `min_classes` (checked on the logits' width at call time),
   `supports_target`.

Composite attacks (AutoAttack) call their parts' `perturb` directly with the same
`AttackModel` on the subset still robust.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustlab.attacks.adaptive import adaptive_settings
from robustlab.attacks.cpu_kernels import CPUKernels
from robustlab.attacks.errors import AttackError
from robustlab.attacks.inputs import (
    check_images,
    check_labels,
    check_logits,
    check_logits_health,
    compute_dtype,
)
from robustlab.attacks.losses import LossFn, is_adversarial
from robustlab.attacks.norms import check_norm, eps_view, layout_of, linf_box, project_and_clip

MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class Gradient:
    """Result of one (possibly EOT-averaged) input-gradient evaluation.

    loss `[N]`, logits `[N, K]` (both detached, averaged over EOT passes) and grad (shape of x).
    """

    loss: Tensor
    logits: Tensor
    grad: Tensor


def input_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    target: Tensor | None = None,
    *,
    bpda: bool = False,
    eot_iter: int = 1,
    cpu_kernels: bool = False,
) -> Gradient:
    """d loss_fn(model(x), y, target) / d x, per sample -- the ONE place gradients are taken.

    `bpda=True` differentiates `model.bpda_forward(x)` (value = the real forward, gradient =
    the model's differentiable approximation / identity). `eot_iter > 1` averages loss, logits
    and gradient over that many stochastic passes (Expectation over Transformation).
    Only `x` is differentiated (`torch.autograd.grad`), so parameters' `.grad` never change.
    `cpu_kernels=True` runs the forward under `CPUKernels` (faster, equal CPU kernels for
    1-channel convolutions, 2x2 max-pooling and the ReLU before it; parameters must be frozen).
    """
    forward = model.bpda_forward if bpda else model
    loss_sum: Tensor | None = None
    logits_sum: Tensor | None = None
    grad_sum: Tensor | None = None
    for _ in range(eot_iter):
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with CPUKernels.when(cpu_kernels):
                logits = forward(xr)
            loss = loss_fn(logits, y, target)
            (grad,) = torch.autograd.grad(loss.sum(), xr)
        loss, logits = loss.detach(), logits.detach()
        if grad_sum is None:
            loss_sum, logits_sum, grad_sum = loss, logits, grad
        else:
            loss_sum, logits_sum, grad_sum = loss_sum + loss, logits_sum + logits, grad_sum + grad
    assert loss_sum is not None and logits_sum is not None and grad_sum is not None
    if eot_iter > 1:
        return Gradient(loss_sum / eot_iter, logits_sum / eot_iter, grad_sum / eot_iter)
    return Gradient(loss_sum, logits_sum, grad_sum)


class AttackModel:
    """The model as an attack sees it: eval-mode forward passes and input gradients.

    Built by `Attack.__call__` (the model is already in eval mode then). `bpda` / `eot_iter`
    come from the model's declarations (`nondifferentiable`, `randomized`) when the attack is
    adaptive, else they are off. `layout` is the memory format inputs are converted to.

    `bucket_batches` (on for CUDA inputs): attacks shrink their batch as samples turn
    adversarial, and every new batch size makes cuDNN (with `cudnn.benchmark`) autotune every
    convolution again -- measured on an H200, that made a ResNet-18 hybrid epoch 25x a standard
    one. With buckets, each pass is padded (with copies of its first row, results sliced off) to
    the next power of two, so a process sees at most log2(N) + 1 batch sizes. Eval-mode models
    treat rows independently, so the padding changes no result.

    `cpu_kernels` (on for CPU inputs of models that are not `torch.compile`d and have a layer
    the kernels could take over, `CPUKernels.may_apply`): forward passes
    run under `robustlab.attacks.cpu_kernels.CPUKernels`, which computes 1-input-channel
    convolutions' input gradients, 2x2 max-pooling and the ReLU before it with faster, equal
    kernels.

    The first output of `logits` / `gradient` (the attack's first forward pass, on the clean
    inputs or a random start near them) is checked once by `check_logits_health`: nan/inf
    logits raise `AttackError`, softmax probabilities warn.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        bpda: bool,
        eot_iter: int,
        layout: torch.memory_format = torch.contiguous_format,
        bucket_batches: bool = False,
        cpu_kernels: bool = False,
    ) -> None:
        if bpda and not callable(getattr(module, "bpda_forward", None)):
            raise AttackError(
                f"model {type(module).__name__} declares nondifferentiable = True but has no "
                "callable bpda_forward(x); an adaptive (BPDA) attack needs it"
            )
        self.module = module
        self.bpda = bpda
        self.eot_iter = eot_iter
        self.layout = layout
        self.bucket_batches = bucket_batches
        self.cpu_kernels = cpu_kernels
        self._outputs_checked = False

    def _checked(self, logits: Tensor, n: int) -> Tensor:
        """`logits` `[n, K]`, health-checked if they are the first output of this model."""
        if not self._outputs_checked:
            check_logits_health(check_logits(logits, n))
            self._outputs_checked = True
        return logits

    def prepare(self, x: Tensor) -> Tensor:
        """`x` in the memory layout the attack computes in."""
        return x.contiguous(memory_format=self.layout) if x.dim() == 4 else x

    def logits(self, x: Tensor) -> Tensor:
        """Plain forward pass `[N, K]` (the real model, no BPDA, one pass even if randomized)."""
        return self._checked(self.raw_logits(x), x.shape[0])

    @torch.no_grad()
    def raw_logits(self, x: Tensor) -> Tensor:
        """`logits` without the first-output health check (the class-count probe uses it)."""
        n, size = x.shape[0], self._bucket(x.shape[0])
        with CPUKernels.when(self.cpu_kernels):
            if size == n:
                return self.module(x)
            return self.module(_pad_rows(x, size))[:n]

    def gradient(
        self, x: Tensor, y: Tensor, loss_fn: LossFn, target: Tensor | None = None
    ) -> Gradient:
        """Input gradient of a per-sample loss, with BPDA / EOT as configured."""
        n, size = x.shape[0], self._bucket(x.shape[0])
        if size != n:
            g = input_gradient(self.module, _pad_rows(x, size), _pad_rows(y, size), loss_fn,
                               _pad_rows(target, size), bpda=self.bpda, eot_iter=self.eot_iter,
                               cpu_kernels=self.cpu_kernels)
            g = Gradient(g.loss[:n], g.logits[:n], g.grad[:n])
        else:
            g = input_gradient(self.module, x, y, loss_fn, target, bpda=self.bpda,
                               eot_iter=self.eot_iter, cpu_kernels=self.cpu_kernels)
        self._checked(g.logits, n)
        return g

    def _bucket(self, n: int) -> int:
        return 1 << max(n - 1, 0).bit_length() if self.bucket_batches else n

    def is_adversarial(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Bool `[N]` from one forward pass."""
        return is_adversarial(self.logits(x), y, target)


def _pad_rows(t: Tensor | None, size: int) -> Tensor | None:
    """`t` with copies of its first row appended up to `size` rows (None stays None)."""
    if t is None or t.shape[0] >= size:
        return t
    pad = t[:1].expand(size - t.shape[0], *t.shape[1:])
    return torch.cat([t, pad]).contiguous(memory_format=layout_of(t))


class BestIterate:
    """Per-sample best iterate of an iterative attack over the full batch `[N, ...]`.

    Order: an adversarial iterate beats any non-adversarial one (the first adversarial one found
    is kept); among non-adversarial ones the higher loss wins.
    """

    def __init__(self, x: Tensor) -> None:
        self.x = x.clone()
        self.loss = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        self.found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    @classmethod
    def from_clean(
        cls,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        target: Tensor | None = None,
    ) -> BestIterate:
        """Start from the clean inputs (one forward pass), so a sample that is adversarial
        already stays so and the attack never raises accuracy above the clean accuracy."""
        best = cls(x)
        best.offer_clean(model, x, y, loss_fn, target)  # every sample is still remaining
        return best

    def offer_clean(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        target: Tensor | None = None,
    ) -> None:
        """Offer the clean inputs as the last candidates, evaluated (one forward pass) only
        for the samples no iterate made adversarial: the attack never raises accuracy above
        the clean accuracy, without a forward pass over the samples it broke (what PGD saves
        against `from_clean`)."""
        idx = self.remaining()
        if idx.numel() == 0:
            return
        xc, yc = x[idx], y[idx]
        tc = target[idx] if target is not None else None
        logits = model.logits(xc)
        self.update(idx, xc, loss_fn(logits, yc, tc), is_adversarial(logits, yc, tc))

    def remaining(self) -> Tensor:
        """Indices `[M]` (int64) of the samples not yet adversarial."""
        return (~self.found).nonzero().flatten()

    def update(self, idx: Tensor, x_cand: Tensor, loss: Tensor, success: Tensor) -> None:
        """Offer candidates `x_cand` for the rows `idx` of the full batch."""
        found = self.found[idx]
        better = ~found & (success | (loss > self.loss[idx]))
        rows = idx[better]
        self.x[rows] = x_cand[better]
        self.loss[rows] = loss[better].to(self.loss.dtype)
        self.found[rows] = success[better]


class Attack:
    """Base class of every attack. See the module docstring for how to write one.

    Common parameters: `eps` (float >= 0 or a per-sample tensor `[N]`; radius of the threat
    model in pixel units of [0, 1] images; <= 1 for linf), `norm` ("linf" | "l2",
    case-insensitive: "Linf" / "L2" work too), `seed` (the same seed gives
    the same output), `adaptive` (use BPDA / EOT when the model declares them), `eot_iter`
    (EOT passes for randomized models; default 10), `memory_format` ("auto" | "channels_last"
    | "contiguous": the layout inputs are converted to for the model's conv layers; "auto"
    picks channels_last for multi-channel 4-D inputs (CPU and CUDA) of models with Conv2d layers).
    """

    name: ClassVar[str] = ""
    bounded: ClassVar[bool] = True
    needs_eps: ClassVar[bool] = True
    gradient_based: ClassVar[bool] = True
    min_classes: ClassVar[int] = 2
    supports_target: ClassVar[bool] = True

    def __init__(
        self,
        *,
        eps: float | Tensor | None = None,
        norm: str = "linf",
        seed: int = 0,
        adaptive: bool = True,
        eot_iter: int | None = None,
        memory_format: str = "auto",
    ) -> None:
        self.norm = check_norm(norm)
        if self.needs_eps and eps is None:
            raise AttackError(f"eps: {type(self).__name__} needs eps (the threat-model radius)")
        self.eps = None if eps is None else self.check_eps(eps, self.norm)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise AttackError(f"seed: expected an int, got {seed!r}")
        self.seed = seed
        self.adaptive = bool(adaptive)
        if eot_iter is not None:
            self.check_positive_int("eot_iter", eot_iter)
        self.eot_iter = eot_iter
        if memory_format not in MEMORY_FORMATS:
            raise AttackError(
                f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
            )
        self.memory_format = memory_format
        # logits width per model (weakly keyed), so repeated calls skip the 1-sample probe
        self._num_classes: weakref.WeakKeyDictionary[nn.Module, tuple[Any, int]] = (
            weakref.WeakKeyDictionary())

    # ----------------------------------------------------------------- validation helpers
    @staticmethod
    def check_eps(eps: Any, norm: str) -> float | Tensor:
        """`eps` as a float or a detached tensor (scalar or `[N]`): finite, >= 0, and <= 1 for
        linf (pixel units of [0, 1] images: 8/255, not 8); else `AttackError` naming eps."""
        if isinstance(eps, Tensor):
            ok = eps.dim() <= 1 and not eps.is_complex() and bool(torch.isfinite(eps).all())
            if not ok or bool((eps < 0).any()):
                raise AttackError(
                    f"eps: expected a finite, non-negative scalar or per-sample tensor "
                    f"[N], got a {eps.dtype} tensor of shape {tuple(eps.shape)}"
                    + (f" with min {eps.min().item()}" if eps.numel() else "")
                )
            top, eps = (float(eps.max()) if eps.numel() else 0.0), eps.detach()
        else:
            if isinstance(eps, bool) or not isinstance(eps, (int, float)):
                raise AttackError(f"eps: expected a float or a tensor, got {eps!r}")
            if not math.isfinite(eps) or eps < 0:
                raise AttackError(f"eps: expected a finite value >= 0, got {eps}")
            top = eps = float(eps)
        if norm == "linf" and top > 1.0:
            raise AttackError(
                f"eps: {top:g} exceeds 1, the whole pixel range; eps is in pixel units of "
                "images scaled to [0, 1] (e.g. 8/255, not 8)"
            )
        return eps

    @staticmethod
    def check_positive_int(field: str, value: Any, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise AttackError(f"{field}: expected an int >= {minimum}, got {value!r}")
        return value

    @staticmethod
    def check_nonneg_float(field: str, value: Any, *, positive: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
        if not ok:
            raise AttackError(
                f"{field}: expected a finite float {'> 0' if positive else '>= 0'}, got {value!r}"
            )
        return value

    def check_step(self, field: str, value: Any) -> float:
        """A step size (absolute, in the norm's units): a finite float >= 0, and > 0 unless
        eps is 0 everywhere (a zero step never moves). Call after `Attack.__init__`."""
        value = self.check_nonneg_float(field, value)
        eps = self.eps
        eps_max = float(eps.max()) if isinstance(eps, Tensor) and eps.numel() else float(eps or 0)
        if value == 0 and eps_max > 0:
            raise AttackError(f"{field}: expected a value > 0 when eps > 0, got 0 "
                              "(a zero step never moves)")
        return value

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-friendly dict (for result files)."""
        out: dict[str, Any] = {"name": self.name or type(self).__name__}
        for k, v in vars(self).items():
            if k.startswith("_") or k.startswith("last_"):
                continue
            out[k] = v.tolist() if isinstance(v, Tensor) else v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------------------- running
    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None
    ) -> Tensor:
        """Adversarial examples for `x` `[N, C, H, W]` (float in [0, 1]) with labels `y` `[N]`
        (any integer dtype).

        `target` `[N]` (integer) makes a targeted attack where supported. The attack computes
        in the model's parameter dtype (float64 / float16 / bfloat16 inputs are cast to it).
        Returns a tensor of the same shape, dtype and device as `x`, in [0, 1] (and in the
        eps-ball if `bounded`).
        """
        self._check_inputs(x, y, target)
        if x.shape[0] == 0:
            return x.clone()
        y, target = y.long(), None if target is None else target.long()
        xc = x.detach().to(compute_dtype(model, x))
        eps = self.eps_tensor(xc)
        with eval_mode(model), frozen_parameters(model), \
                weights_layout(model, self._weights_layout(model, xc)):
            amodel = self.attack_model(model, xc)
            self._check_classes(self._classes_of(model, amodel, xc), y, target)
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            x_in = amodel.prepare(xc)
            x_adv = self.perturb(amodel, x_in, y, eps, target, generator)
        x_adv = self._project(x_in, x_adv.detach(), eps)
        if x_adv.dtype != x.dtype:
            x_adv = self._in_dtype_of(x, x_adv)
        return x_adv.contiguous(memory_format=layout_of(x))

    def _check_classes(self, k: int, y: Tensor, target: Tensor | None) -> None:
        """Labels `y` / `target` `[N]` against the model's logits width `k`."""
        if k < self.min_classes:
            raise AttackError(
                f"{type(self).__name__} needs a model with at least {self.min_classes} "
                f"classes; the model's logits have width {k}"
            )
        for field, t in (("y", y), ("target", target)):
            if t is not None and int(t.max()) >= k:
                raise AttackError(
                    f"{field}: labels must be < the number of classes {k}, got max {int(t.max())}"
                )

    def _project(self, x: Tensor, x_adv: Tensor, eps: Tensor) -> Tensor:
        """`x_adv` onto the eps-ball around `x` (if `bounded`) ∩ [0, 1]; `eps` is `[N]`."""
        if self.bounded and self.norm == "linf":
            return torch.clamp(x_adv, *linf_box(x, eps_view(eps, x)))
        if self.bounded:
            return project_and_clip(x, x_adv, eps_view(eps, x), self.norm)
        return x_adv.clamp(0.0, 1.0)

    def _in_dtype_of(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """`x_adv` (computed in another dtype) in `x`'s dtype, still in [0, 1] and the budget:
        projected again around the original `x` in the finer of the two dtypes, then rounded
        towards `x` (each coordinate's |x_adv - x| never grows by the rounding)."""
        fine = torch.promote_types(x.dtype, x_adv.dtype)
        xf = x.detach().to(fine)
        adv = self._project(xf, x_adv.to(fine), self.eps_tensor(xf))
        out = adv.to(x.dtype)
        if fine != x.dtype:
            away = (out.to(fine) - xf).abs() > (adv - xf).abs()
            out = torch.where(away, torch.nextafter(out, x.detach()), out)
        return out

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """The attack proper. `eps` is `[N]`; see the module docstring. Subclasses implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement perturb()")

    # --------------------------------------------------------------------------- internals
    def attack_model(self, model: nn.Module, x: Tensor) -> AttackModel:
        """The `AttackModel` for `model` given this attack's adaptive / layout settings."""
        bpda, eot = adaptive_settings(model, self.adaptive, self.eot_iter)
        compiled = hasattr(model, "_orig_mod")  # torch.compile'd: keep dynamo's graph intact
        kernels = x.device.type == "cpu" and not compiled and CPUKernels.may_apply(model)
        return AttackModel(model, bpda=bpda, eot_iter=eot, layout=self._layout_for(model, x),
                           bucket_batches=x.is_cuda, cpu_kernels=kernels)

    def _layout_for(self, model: nn.Module, x: Tensor) -> torch.memory_format:
        if x.dim() != 4 or self.memory_format == "contiguous":
            return torch.contiguous_format
        if self.memory_format == "channels_last":
            return torch.channels_last
        # Measured on the 2-core CPU (bench/attack_speed.py): channels_last costs ~23 % for
        # 1-channel inputs (LeNet-5 / MNIST), so `auto` keeps those contiguous (CPU and CUDA).
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        use = has_conv and x.shape[1] > 1
        return torch.channels_last if use else torch.contiguous_format

    def _weights_layout(self, model: nn.Module, x: Tensor) -> torch.memory_format:
        """channels_last weights only when asked for explicitly, on the CPU (on CUDA a
        model is converted once, by its owner: training does so by default)."""
        if self.memory_format == "channels_last" and x.device.type == "cpu" and x.dim() == 4:
            return torch.channels_last
        return torch.contiguous_format

    def __getstate__(self) -> dict[str, Any]:  # the weak cache cannot be pickled
        state = dict(vars(self))
        state["_num_classes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._num_classes = weakref.WeakKeyDictionary()

    def _classes_of(self, model: nn.Module, amodel: AttackModel, x: Tensor) -> int:
        """The model's logits width, probed once per model, input shape and layout."""
        key = (tuple(x.shape[1:]), x.device, amodel.layout)
        cached = self._num_classes.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        k = self._probe_classes(amodel, x)
        # keyed by the layout the probe ended with (it falls back to contiguous if needed)
        self._num_classes[model] = ((key[0], key[1], amodel.layout), k)
        return k

    @staticmethod
    def _probe_classes(amodel: AttackModel, x: Tensor) -> int:
        """Logits' width from one forward pass on one sample; falls back to the contiguous
        layout if the model cannot run channels_last inputs (e.g. it uses `.view`). Raises
        `AttackError` unless the model returns a float logits tensor `[1, K]`."""
        try:
            out = amodel.raw_logits(amodel.prepare(x[:1]))
        except RuntimeError:
            if amodel.layout == torch.contiguous_format:
                raise
            amodel.layout = torch.contiguous_format
            out = amodel.raw_logits(x[:1].contiguous())
        return int(check_logits(out, 1).shape[1])

    def eps_tensor(self, x: Tensor) -> Tensor:
        """Per-sample eps `[N]` on x's device/dtype (zeros when the attack takes no eps)."""
        n = x.shape[0]
        if self.eps is None:
            return torch.zeros(n, device=x.device, dtype=x.dtype)
        if isinstance(self.eps, Tensor):
            e = self.eps.to(device=x.device, dtype=x.dtype)
            if e.dim() == 0:
                return e.expand(n).clone()
            if e.shape[0] != n:
                raise AttackError(
                    f"eps: per-sample tensor has {e.shape[0]} entries but x has {n} samples"
                )
            return e.clone()
        return torch.full((n,), self.eps, device=x.device, dtype=x.dtype)

    def _check_inputs(self, x: Tensor, y: Tensor, target: Tensor | None) -> None:
        """Validate one call's inputs before any compute (`AttackError` naming the argument):
        `x` `[N, ...]` float images in [0, 1]; `y` / `target` integer `[N]` labels >= 0 on
        x's device (the upper bound is checked against the logits' width later)."""
        check_images(x)
        check_labels("y", y, x)
        if target is not None:
            if not self.supports_target:
                raise AttackError(f"target: {type(self).__name__} is untargeted only")
            check_labels("target", target, x)
            if bool((target == y).any()):
                raise AttackError("target: some target labels equal the true labels y")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode; restore every submodule's own `training` flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily set `requires_grad=False` on every parameter of `model` (restored after).

    Input gradients then skip the weight-gradient kernels (measured ~12 % faster per
    forward+backward on LeNet-5 / SmallCNN on CPU); values and `.grad` are never touched.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def weights_layout(model: nn.Module, layout: torch.memory_format) -> Iterator[nn.Module]:
    """Temporarily store `model`'s 4-D (convolution) weights in `layout`; restored after.

    oneDNN picks its convolution kernels by the weights' layout as much as by the input's; the
    original storage of every parameter is put back afterwards, so values, identity and
    optimizer references are untouched.
    """
    if layout == torch.contiguous_format:
        yield model
        return
    params = [p for p in model.parameters()
              if p.dim() == 4 and not p.is_contiguous(memory_format=layout)]
    originals = [p.data for p in params]
    for p in params:
        p.data = p.data.contiguous(memory_format=layout)
    try:
        yield model
    finally:
        for p, data in zip(params, originals, strict=True):
            p.data = data
