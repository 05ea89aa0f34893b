"""Adaptive-attack machinery: BPDA (Athalye et al., 2018) and EOT.

The contract between models/defenses and attacks:
- a model with `nondifferentiable = True` provides `bpda_forward(x)`: its value is the real
  forward pass, its gradient comes from a differentiable approximation (the identity by
  default). Build it with `bpda(preprocess, approx)` or wrap a classifier with
  `BPDAWrapper(preprocess, classifier, approx)`.
- a model with `randomized = True` is stochastic; attacks average loss, logits and input
  gradient over `eot_iter` passes (Expectation over Transformation).
Attacks built with `adaptive=True` (the default) apply both automatically through
`robustlab.attacks.base.input_gradient`, the single place gradients are taken;
`adaptive=False` attacks the model naively (for the labelled non-adaptive numbers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

DEFAULT_EOT_ITER = 10

Transform = Callable[[Tensor], Tensor]


class _BPDA(torch.autograd.Function):
    """Value of `forward_fn(x)`, gradient of `approx_fn(x)` (identity when None)."""

    @staticmethod
    def forward(ctx, x: Tensor, forward_fn: Transform, approx_fn: Transform | None) -> Tensor:
        ctx.approx_fn = approx_fn
        if approx_fn is not None:
            ctx.save_for_backward(x)
        with torch.no_grad():
            return forward_fn(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.approx_fn is None:
            return grad_out, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            out = ctx.approx_fn(xr)
            (grad,) = torch.autograd.grad(out, xr, grad_out)
        return grad, None, None


def bpda(forward_fn: Transform, approx_fn: Transform | None = None) -> Transform:
    """`x -> forward_fn(x)` whose backward pass is that of `approx_fn` (identity if None).

    `forward_fn` must keep the shape of `x` when `approx_fn` is None.
    """

    def apply(x: Tensor) -> Tensor:
        return _BPDA.apply(x, forward_fn, approx_fn)

    return apply


class BPDAWrapper(nn.Module):
    """`classifier(preprocess(x))` with a non-differentiable `preprocess`.

    `forward` is the real pipeline; `bpda_forward` is the same value with the gradient of
    `approx` (identity by default) through the preprocessing. Declares
    `nondifferentiable = True`; pass `randomized=True` if `preprocess` is stochastic.
    """

    nondifferentiable = True

    def __init__(
        self,
        preprocess: Transform,
        classifier: nn.Module,
        approx: Transform | None = None,
        *,
        randomized: bool = False,
    ) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.classifier = classifier
        self.approx = approx
        self.randomized = randomized

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.preprocess(x))

    def bpda_forward(self, x: Tensor) -> Tensor:
        return self.classifier(bpda(self.preprocess, self.approx)(x))


def adaptive_settings(model: nn.Module, adaptive: bool, eot_iter: int | None) -> tuple[bool, int]:
    """`(use_bpda, eot_iter)` for attacking `model`: BPDA iff adaptive and the model declares
    `nondifferentiable`; `eot_iter` (default `DEFAULT_EOT_ITER`) iff adaptive and the model
    declares `randomized`, else 1."""
    use_bpda = adaptive and bool(getattr(model, "nondifferentiable", False))
    randomized = adaptive and bool(getattr(model, "randomized", False))
    return use_bpda, ((eot_iter or DEFAULT_EOT_ITER) if randomized else 1)
