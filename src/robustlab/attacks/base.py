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
   validates inputs (finite, in [0, 1], NCHW float, labels `[N]` int64 in range, `target`),
   checks the logits' width against `min_classes` (one forward pass on one sample), puts the
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
from robustlab.attacks.losses import LossFn, is_adversarial
from robustlab.attacks.norms import check_norm, eps_view, layout_of, linf_box, project_and_clip

MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last", "contiguous")


class AttackError(ValueError):
    """Invalid attack configuration or invalid attack inputs (raised before any compute)."""


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

    def prepare(self, x: Tensor) -> Tensor:
        """`x` in the memory layout the attack computes in."""
        return x.contiguous(memory_format=self.layout) if x.dim() == 4 else x

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Plain forward pass (the real model, no BPDA, one pass even if randomized)."""
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
            return Gradient(g.loss[:n], g.logits[:n], g.grad[:n])
        return input_gradient(self.module, x, y, loss_fn, target, bpda=self.bpda,
                              eot_iter=self.eot_iter, cpu_kernels=self.cpu_kernels)

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
    model in pixel units of [0, 1] images), `norm` ("linf" | "l2"), `seed` (the same seed gives
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
        if isinstance(eps, Tensor):
            if eps.dim() > 1 or not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
                raise AttackError(
                    f"eps: expected a finite, non-negative scalar or per-sample tensor [N], "
                    f"got a tensor of shape {tuple(eps.shape)} with min {eps.min().item()}"
                )
            eps = eps.detach()
        elif eps is not None:
            if isinstance(eps, bool) or not isinstance(eps, (int, float)):
                raise AttackError(f"eps: expected a float or a tensor, got {eps!r}")
            if not math.isfinite(eps) or eps < 0:
                raise AttackError(f"eps: expected a finite value >= 0, got {eps}")
            eps = float(eps)
        self.eps = eps
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
        """Adversarial examples for `x` `[N, C, H, W]` (float in [0, 1]) with labels `y` `[N]`.

        `target` `[N]` (int64) makes a targeted attack where supported. Returns a tensor of the
        same shape, dtype and device, in [0, 1] (and in the eps-ball if `bounded`).
        """
        self._check_inputs(x, y, target)
        if x.shape[0] == 0:
            return x.clone()
        eps = self.eps_tensor(x)
        with eval_mode(model), frozen_parameters(model), \
                weights_layout(model, self._weights_layout(model, x)):
            amodel = self.attack_model(model, x)
            k = self._classes_of(model, amodel, x)
            if k < self.min_classes:
                raise AttackError(
                    f"{type(self).__name__} needs a model with at least {self.min_classes} "
                    f"classes; the model's logits have width {k}"
                )
            if int(y.max()) >= k:
                raise AttackError(
                    f"y: labels must be < the number of classes {k}, got max {int(y.max())}"
                )
            if target is not None and int(target.max()) >= k:
                raise AttackError(
                    f"target: labels must be < the number of classes {k}, "
                    f"got max {int(target.max())}"
                )
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            x_in = amodel.prepare(x.detach())
            x_adv = self.perturb(amodel, x_in, y, eps, target, generator)
        x_adv = x_adv.detach()
        if self.bounded and self.norm == "linf":
            x_adv = torch.clamp(x_adv, *linf_box(x_in, eps_view(eps, x_in)))
        elif self.bounded:
            x_adv = project_and_clip(x_in, x_adv, eps_view(eps, x_in), self.norm)
        else:
            x_adv = x_adv.clamp(0.0, 1.0)
        return x_adv.to(dtype=x.dtype).contiguous(memory_format=layout_of(x))

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
        layout if the model cannot run channels_last inputs (e.g. it uses `.view`)."""
        try:
            out = amodel.logits(amodel.prepare(x[:1]))
        except RuntimeError:
            if amodel.layout == torch.contiguous_format:
                raise
            amodel.layout = torch.contiguous_format
            out = amodel.logits(x[:1].contiguous())
        if out.dim() != 2:
            raise AttackError(f"model output: expected logits [N, K], got shape {tuple(out.shape)}")
        return int(out.shape[1])

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
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise AttackError(f"x: expected a float tensor, got {getattr(x, 'dtype', type(x))}")
        if x.dim() < 2:
            raise AttackError(f"x: expected a batch [N, C, H, W], got shape {tuple(x.shape)}")
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            raise AttackError(
                f"y: expected int64 labels of shape [N], got "
                f"{getattr(y, 'dtype', type(y))} {tuple(getattr(y, 'shape', ()))}"
            )
        if y.shape[0] != x.shape[0]:
            raise AttackError(f"y: {y.shape[0]} labels for {x.shape[0]} inputs")
        if x.shape[0]:
            lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates
            if not (0.0 <= lo and hi <= 1.0):
                if not bool(torch.isfinite(x).all()):
                    raise AttackError("x: contains non-finite values (nan/inf)")
                raise AttackError(f"x: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
        if y.shape[0] and int(y.min()) < 0:
            raise AttackError(f"y: labels must be >= 0, got min {int(y.min())}")
        if target is not None:
            if not self.supports_target:
                raise AttackError(f"target: {type(self).__name__} is untargeted only")
            if (
                not isinstance(target, Tensor)
                or target.dtype != torch.int64
                or target.shape != y.shape
            ):
                raise AttackError(
                    f"target: expected int64 labels of shape {tuple(y.shape)}, "
                    f"got {getattr(target, 'dtype', type(target))} "
                    f"{tuple(getattr(target, 'shape', ()))}"
                )
            if y.shape[0] and int(target.min()) < 0:
                raise AttackError(f"target: labels must be >= 0, got min {int(target.min())}")
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
