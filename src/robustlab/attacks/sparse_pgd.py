"""sparse-PGD, the white-box L0 attack of Zhong, Liu & Zhang (ICLR 2025 / arXiv 2024, "Towards
Efficient Training and Evaluation of Robust Models against l0 Bounded Adversarial
Perturbations"; the authors' code: github.com/CityU-MLO/sPGD, `autoattack/spgd.py`).

The perturbation of an image is split into a magnitude `p` `[C, H, W]` (each coordinate within
`magnitude` and the [0, 1] box) and a continuous pixel mask `m` `[1, H, W]`; the image the
model sees is `x + p * top_k(sigmoid(m))`, where `top_k` keeps the `k = eps` PIXELS with the
largest mask (a pixel counts once over its channels) as a binary mask. Each step takes the
input gradient `g` of the cross-entropy (targeted: minus the target's), then

- `p`: a signed step `alpha * magnitude * sign(g_p)`, clipped to `[-magnitude, magnitude]`
  and the box; `g_p = g * sigmoid(m)` (the UNPROJECTED gradient, the authors' default) or
  `g * top_k(sigmoid(m))` (the PROJECTED one);
- `m`: a normalised L2 step `sqrt(C*H*W) * beta * g_m / ||g_m||_2` with
  `g_m = sum_channels(g * p) * sigmoid'(m)`;
- a sample whose top-k set has not changed for `patience` consecutive steps gets a fresh
  random mask (N(0, 1), as its start; the magnitude starts uniform in `[-magnitude,
  magnitude]`).

Samples are frozen once adversarial; each keeps its best iterate (an adversarial one, else the
highest loss). `variant="both"` runs the unprojected then the projected attack (on the samples
still robust), the two white-box parts of the authors' sparse-AutoAttack (sAA).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel, BestIterate
from robustlab.attacks.losses import ce_loss, is_adversarial
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

VARIANTS = ("both", "unprojected", "projected")
_TINY_GRAD = 2e-10  # the authors' threshold: a smaller mask gradient makes no mask step


def top_k_pixels(mask: Tensor, k: int) -> Tensor:
    """Binary `[n, 1, H, W]` mask of the `k` largest entries of `mask` `[n, 1, H, W]`."""
    flat = mask.flatten(1)
    keep = torch.zeros_like(flat)
    keep.scatter_(1, flat.topk(min(k, flat.shape[1]), dim=1).indices, 1.0)
    return keep.view_as(mask)


@ATTACKS.register("sparse-pgd")
class SparsePGD(Attack):
    """sparse-PGD, L0 pixel-wise, untargeted or targeted (see the module docstring); `eps` is
    the number of pixels `k` (an integer)."""

    quick_options = {"steps": 6}
    needs_images = True
    OPTIONS = {
        "norm": Option("l0", "choice", "threat-model norm: l0 only (eps = pixels changed, a "
                       "pixel counting once over its channels)", choices=("l0",)),
        "steps": Option(10000, "int", "iterations per variant (the authors' sAA evaluation: "
                        "10,000)", low=1),
        "variant": Option("both", "choice", "unprojected: the gradient of the magnitude "
                          "through the continuous mask (the authors' default); projected: "
                          "through the binary top-k mask; both: unprojected, then projected "
                          "on the samples still robust (sAA's white-box parts)",
                          choices=VARIANTS),
        "magnitude": Option(1.0, "float", "bound on each changed coordinate's |change| (the "
                            "authors' epsilon; 1: the [0, 1] box only)", low=0.0, high=1.0,
                            low_open=True),
        "alpha": Option(0.25, "float", "magnitude step, as a fraction of magnitude", low=0.0,
                        low_open=True),
        "beta": Option(0.25, "float", "mask step, as a fraction of sqrt(C*H*W)", low=0.0,
                       low_open=True),
        "patience": Option(3, "int", "steps without a change of the top-k set before the "
                           "mask restarts at random", low=1),
    }

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        best = BestIterate.from_clean(model, x, y, ce_loss, target)
        variants = ("unprojected", "projected") if self.variant == "both" else (self.variant,)
        for variant in variants:
            for k in sorted({int(v) for v in eps[~best.found].tolist()} - {0}):
                idx = ((~best.found) & (eps == k)).nonzero()[:, 0]
                self._run(model, x, y, idx, k, target, variant == "projected", generator,
                          best)
        return best.x

    def _run(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        idx: Tensor,
        k: int,
        target: Tensor | None,
        projected: bool,
        generator: torch.Generator,
        best: BestIterate,
    ) -> None:
        """`steps` iterations on the rows `idx` of the batch with `k` pixels, offering every
        iterate to `best`. Random numbers are drawn for all of `idx` at every step, so
        freezing a sample does not change the others' draws."""
        xs, ys = x[idx], y[idx]
        ts = None if target is None else target[idx]
        n, c, h, w = xs.shape
        mag = self.magnitude
        u = torch.rand(xs.shape, generator=generator, device=x.device, dtype=x.dtype)
        p = torch.minimum(torch.maximum((2 * u - 1) * mag, -xs), 1 - xs)
        m = torch.randn((n, 1, h, w), generator=generator, device=x.device, dtype=x.dtype)
        stale = torch.zeros(n, dtype=torch.long, device=x.device)
        live = torch.ones(n, dtype=torch.bool, device=x.device)
        mask_step = math.sqrt(c * h * w) * self.beta
        for _ in range(self.steps):
            fresh = torch.randn((n, 1, h, w), generator=generator, device=x.device,
                                dtype=x.dtype)
            a = live.nonzero()[:, 0]
            if a.numel() == 0:
                break
            s = torch.sigmoid(m[a])
            keep = top_k_pixels(s, k)
            x_adv = xs[a] + p[a] * keep
            ta = None if ts is None else ts[a]
            g = model.gradient(x_adv, ys[a], ce_loss, ta)
            won = is_adversarial(g.logits, ys[a], ta)
            best.update(idx[a], x_adv, g.loss, won)
            live[a[won]] = False
            grad_p = g.grad * (keep if projected else s)
            grad_m = (g.grad * p[a]).sum(dim=1, keepdim=True) * s * (1 - s)
            norm = grad_m.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            step = torch.where(norm < _TINY_GRAD, 0.0, mask_step / (norm + 1e-10))
            m[a] = m[a] + step * grad_m
            p[a] = torch.minimum(torch.maximum(
                (p[a] + self.alpha * mag * grad_p.sign()).clamp(-mag, mag), -xs[a]), 1 - xs[a])
            same = (top_k_pixels(m[a], k) == keep).flatten(1).all(dim=1)
            stale[a] = torch.where(same, stale[a] + 1, 0)
            restart = a[stale[a] >= self.patience]
            m[restart], stale[restart] = fresh[restart], 0

