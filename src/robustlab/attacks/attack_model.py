"""The model as an attack sees it (`AttackModel`) and the ONE input-gradient routine.

`Attack.__call__` builds an `AttackModel` for each call; inside `perturb` an attack talks to the
model only through it (`logits`, `gradient`, `is_adversarial`), so BPDA / EOT, batch bucketing
on CUDA and the CPU kernels apply to every attack alike. See `robustlab.attacks.base` for the
attack contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks.errors import AttackError
from robustlab.attacks.inputs import check_logits, check_logits_health
from robustlab.attacks.losses import LossFn, is_adversarial
from robustlab.attacks.norms import layout_of


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
            if not loss.requires_grad:  # a detached / torch.no_grad forward: no gradient
                raise AttackError("model output: the logits are not differentiable with "
                                  "respect to x (detached or computed under torch.no_grad); "
                                  "a gradient attack cannot run (square needs no gradient)")
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
    run under `robustlab.accel.cpu_kernels.CPUKernels`, which computes 1-input-channel
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
