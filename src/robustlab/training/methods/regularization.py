"""Robust optimisation by regularisation: `gradient-reg` and `lipschitz`.

`gradient-reg` (input-gradient regularisation, cf. Ross & Doshi-Velez 2018, Simon-Gabriel et
al. 2019): `L = CE(f(x), y) + lam * eps * mean_i ||grad_x CE_i||_*`, where `||.||_*` is the dual
norm of the threat model (l1 for linf, l2 for l2) -- the first-order increase of the loss under
an eps-perturbation. Trained by double backpropagation (`create_graph=True`). Needs eps (warmed up
by `eps_warmup`, `AdversarialMethod`); logs it.

`lipschitz`: a spectral-norm penalty `lam * sum_l relu(sigma_l - target) ** 2` over every Conv2d
/ Linear weight, with sigma_l estimated by power iteration (`power_iters` per step, the vectors
persisted across steps as method state). Deliberately NOT `torch.nn.utils.parametrizations.
spectral_norm`: that renames the model's state_dict keys (`...parametrizations.weight.original`)
so a run folder could no longer be reloaded into a plain model by `load_run`. For a convolution,
sigma is that of the kernel reshaped to `[out, in * kh * kw]` (a proxy for the operator norm).
Per-epoch log: `spectral_max` (the largest estimate at the epoch's end).
`label_smoothing` smooths both methods' cross-entropy (for `gradient-reg` also the one whose
input gradient is penalised: the penalty is the first-order increase of the training loss).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.registry import METHODS
from robustlab.training.methods.base import (
    AdversarialMethod,
    BatchOutput,
    TrainingMethod,
    label_smoothing,
)
from robustlab.training.methods.options import Option


@METHODS.register("gradient-reg")
class GradientReg(AdversarialMethod):
    cpu_kernels = False  # double backpropagation (create_graph=True)
    OPTIONS: ClassVar[dict[str, Option]] = {
        "lam": Option(1.0, "float", "weight of eps x the input gradient's dual norm", low=0.0),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        eps = self.budget(ctx)
        xr = x.detach().requires_grad_(True)
        logits = model(xr)
        ce = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing(ctx))
        (grad,) = torch.autograd.grad(ce.sum(), xr, create_graph=True)
        flat = grad.reshape(len(grad), -1)
        dual = flat.abs().sum(1) if self.norm == "linf" else flat.norm(p=2, dim=1)
        loss = ce.mean() + self.lam * eps * dual.mean()
        return BatchOutput(loss, logits.detach())


@METHODS.register("lipschitz")
class Lipschitz(TrainingMethod):
    cpu_kernels = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "lam": Option(0.01, "float", "weight of the spectral-norm penalty", low=0.0),
        "target": Option(1.0, "float", "spectral norm each layer may reach unpenalised",
                         low=0.0),
        "power_iters": Option(1, "int", "power iterations per step", low=1),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.u: list[torch.Tensor] = []

    def setup(self, ctx) -> None:
        self.layers = [m for m in ctx.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if not self.layers:
            raise ValueError("method lipschitz: the model has no Conv2d or Linear layer")
        gen = torch.Generator().manual_seed(ctx.cfg.seed)
        self.u = [F.normalize(torch.randn(m.weight.shape[0], generator=gen), dim=0)
                  .to(m.weight.device) for m in self.layers]
        self.last_sigma = torch.zeros(len(self.layers))

    def sigmas(self) -> torch.Tensor:
        """Differentiable spectral-norm estimates `[L]`; advances the power iteration."""
        out = []
        for i, m in enumerate(self.layers):
            w = m.weight.reshape(m.weight.shape[0], -1)
            with torch.no_grad():
                u = self.u[i]
                for _ in range(self.power_iters):
                    v = F.normalize(w.t() @ u, dim=0)
                    u = F.normalize(w @ v, dim=0)
                self.u[i] = u
            out.append(u @ w @ v)
        return torch.stack(out)

    def loss(self, model, x, y, ctx) -> BatchOutput:
        logits = model(x)
        sigma = self.sigmas()
        self.last_sigma = sigma.detach()
        penalty = F.relu(sigma - self.target).pow(2).sum()
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing(ctx))
        return BatchOutput(ce + self.lam * penalty, logits.detach())

    def end_epoch(self, ctx) -> dict[str, Any]:
        return {"spectral_max": float(self.last_sigma.max())}

    def state_dict(self) -> dict[str, Any]:
        return {"u": list(self.u)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["u"]) != len(self.u):
            raise ValueError(f"lipschitz: checkpoint has {len(state['u'])} power-iteration "
                             f"vectors, the model has {len(self.u)} layers")
        self.u = [u.to(old.device) for u, old in zip(state["u"], self.u, strict=True)]
