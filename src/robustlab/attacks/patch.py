"""Adversarial patch attacks: the change is confined to one square window of the image.

Two attacks, both registered like every other (`attack(model, x, y) -> x_adv`):

- `patch-local` (per image, the LaVAN / "sparse patch" setting): PGD on the pixels of one
  `size x size` window per image, at a given top-left corner (`location`) or at a random one
  drawn again for every restart (a random search over locations; the best restart per image
  is kept). `eps` caps the change inside the window in `norm` (`eps=1` with linf is the
  unrestricted patch: any value in [0, 1]), so the result lies in the eps-ball AND in the
  window, and `robustlab evaluate` counts it under its eps/norm budget unchanged.
- `patch-universal` (Brown et al. 2017): ONE patch for all images, optimised over a set of
  training images with a random location (and optionally a random scale) per image and step,
  then pasted over the test images at a random location. `fit(model, x_train, y_train)` fits
  it explicitly; called without a fit, it cross-fits within the batch (see the class).

Every randomness (locations, scales, starts) comes from the seeded generator: the same seed
gives the same output. Only the window's pixels differ from `x` (all channels of them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import Attack, AttackError, AttackModel, BestIterate
from robustlab.attacks.execution import frozen_parameters, weights_layout, weights_layout_for
from robustlab.attacks.inputs import compute_dtype
from robustlab.attacks.losses import LossFn, ce_loss, get_loss, is_adversarial
from robustlab.attacks.norms import (
    eps_view,
    linf_box,
    lp_norm,
    project_and_clip,
    random_in_ball,
    steepest_direction,
)
from robustlab.common.checks import check_number
from robustlab.common.modes import eval_mode
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

UNFITTED = ("cross-fit", "refuse")


# ------------------------------------------------------------------------------- windows
def check_window(size: int, x: Tensor, field: str = "size") -> None:
    """`AttackError` unless `x` is `[N, C, H, W]` and a `size x size` window fits in it (the
    option `size` named as `field`)."""
    if x.dim() != 4:
        raise AttackError(f"x: patch attacks need images [N, C, H, W], got shape "
                          f"{tuple(x.shape)}")
    h, w = x.shape[2], x.shape[3]
    if size > min(h, w):
        raise AttackError(f"{field}: expected a patch side <= the image side {min(h, w)} "
                          f"(images {h}x{w}), got {size}")


def random_corners(n: int, h: int, w: int, side: int, generator: torch.Generator,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """Uniform top-left corners (top `[n]`, left `[n]`, int64) of `side x side` windows."""
    top = torch.randint(0, h - side + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w - side + 1, (n,), generator=generator, device=device)
    return top, left


def window_mask(top: Tensor, left: Tensor, side: int, h: int, w: int) -> Tensor:
    """Bool `[n, 1, h, w]`: True inside each image's `side x side` window at (top, left)."""
    rows = torch.arange(h, device=top.device)[None, :] - top[:, None]
    cols = torch.arange(w, device=top.device)[None, :] - left[:, None]
    in_rows, in_cols = (rows >= 0) & (rows < side), (cols >= 0) & (cols < side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def paste(patch: Tensor, x: Tensor, top: Tensor, left: Tensor) -> Tensor:
    """`x` `[n, C, H, W]` with `patch` `[C, s, s]` replacing each image's window at
    (top `[n]`, left `[n]`). Differentiable in `patch` (a gather, no in-place write)."""
    n, _, h, w = x.shape
    s = patch.shape[-1]
    i = (torch.arange(h, device=x.device)[None, :] - top[:, None]).clamp(0, s - 1)
    j = (torch.arange(w, device=x.device)[None, :] - left[:, None]).clamp(0, s - 1)
    placed = patch[:, i[:, :, None], j[:, None, :]].permute(1, 0, 2, 3)  # [n, C, H, W]
    return torch.where(window_mask(top, left, s, h, w), placed.to(x.dtype), x)


def fits_in_window(x: Tensor, x_adv: Tensor, size: int) -> Tensor:
    """Bool `[N]`: every pixel where `x_adv` differs from `x` (any channel) lies inside one
    `size x size` window (the changed pixels' bounding box is at most `size` on each side)."""
    changed = (x_adv != x).any(dim=1)  # [N, H, W]
    rows, cols = changed.any(dim=2), changed.any(dim=1)  # [N, H], [N, W]

    def extent(m: Tensor) -> Tensor:
        idx = torch.arange(m.shape[1], device=m.device).expand_as(m)
        first = torch.where(m, idx, m.shape[1]).amin(dim=1)
        last = torch.where(m, idx, -1).amax(dim=1)
        return (last - first + 1).clamp_min(0)

    return (extent(rows) <= size) & (extent(cols) <= size)


# ------------------------------------------------------------------------ patch-local
@ATTACKS.register("patch-local")
class PatchLocal(Attack):
    """Per-image square patch: PGD on the pixels of one `size x size` window (LaVAN setting).

    `eps` / `norm`: the cap on the change INSIDE the window (`eps=1`, linf: the unrestricted
    patch, any values in [0, 1]; a smaller eps gives the patch-and-Lp threat model). Outside
    the window nothing changes. Each restart starts from uniform noise in the
    capped window (clipped to [0, 1]); per image the first adversarial iterate (else the
    highest-loss one) over all restarts is returned; samples already adversarial are frozen.
    `within_threat_model(x, x_adv)` checks an output against the threat model.
    """

    quick_options = {"size": 3, "steps": 5, "restarts": 2}

    OPTIONS = {
        "size": Option(8, "int", "window side in pixels", low=1),
        "location": Option(None, "ints", "[row, col]: the window's top-left corner for every "
                           "image (null: a random window per image, drawn again at each "
                           "restart)", length=2, allow_none=True),
        "steps": Option(40, "int", "PGD steps per restart", low=1),
        "step_size": Option(None, "float", "absolute step (null: 2.5 eps / steps)", low=0.0,
                            allow_none=True),
        "restarts": Option(1, "int", "runs, each on the samples still robust", low=1),
        "loss": Option("ce", "choice", "loss maximised", choices=("ce", "margin")),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.check_step("step_size")
        self._loss_fn = get_loss(self.loss)

    def _check_inputs(self, x: Tensor, y: Tensor, target: Tensor | None) -> None:
        super()._check_inputs(x, y, target)
        check_window(self.size, x, self.field("size"))
        if self.location is not None:
            row, col = self.location
            h, w = x.shape[2], x.shape[3]
            if row + self.size > h or col + self.size > w:
                raise AttackError(f"{self.field('location')}: a {self.size}x{self.size} window "
                                  f"at {[row, col]} does not fit in {h}x{w} images; expected "
                                  f"row <= "
                                  f"{h - self.size} and col <= {w - self.size}")

    def within_threat_model(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """Bool `[N]`: the change lies in one `size x size` window and in the eps-ball."""
        eps = self.eps_tensor(x)
        inside = lp_norm((x_adv - x).to(eps.dtype), self.norm) <= eps * (1 + 1e-5) + 1e-6
        return fits_in_window(x, x_adv, self.size) & inside

    def _corners(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n, _, h, w = x.shape
        if self.location is None:
            return random_corners(n, h, w, self.size, generator, x.device)
        full = torch.full((n,), 0, dtype=torch.long, device=x.device)
        return full + self.location[0], full + self.location[1]

    def perturb(self, model, x, y, eps, target, generator):
        step = 2.5 * eps / self.steps if self.step_size is None else torch.full_like(
            eps, self.step_size)
        best = BestIterate(x)
        h, w = x.shape[2], x.shape[3]
        for _ in range(self.restarts):
            top, left = self._corners(x, generator)  # drawn for the whole batch: freezing
            noise = random_in_ball(x, eps_view(eps, x), self.norm, generator)  # never shifts
            idx = best.remaining()
            if idx.numel() == 0:
                break
            mask = window_mask(top[idx], left[idx], self.size, h, w)
            x0, e0 = x[idx], eps_view(eps[idx], x)
            start = project_and_clip(x0, x0 + noise[idx] * mask, e0, self.norm)
            self._restart(model, best, idx, start, x0, y, e0, eps_view(step[idx], x), mask,
                          target)
        best.offer_clean(model, x, y, self._loss_fn, target)
        return best.x

    def _restart(self, model: AttackModel, best: BestIterate, idx: Tensor, xa: Tensor,
                 x0: Tensor, y: Tensor, e0: Tensor, s0: Tensor, mask: Tensor,
                 target: Tensor | None) -> None:
        """`steps` masked PGD steps from `xa` `[m, ...]` for the rows `idx` of the batch;
        `e0`, `s0` `[m, 1, 1, 1]`, `mask` `[m, 1, H, W]`. Results go into `best`."""
        y0, t0 = y[idx], None if target is None else target[idx]
        lo, hi = linf_box(x0, e0) if self.norm == "linf" else (None, None)
        for k in range(self.steps + 1):
            if k == self.steps:  # the last iterate: a forward pass only
                logits = model.logits(xa)
                loss = self._loss_fn(logits, y0, t0)
                best.update(idx, xa, loss, is_adversarial(logits, y0, t0))
                return
            g = model.gradient(xa, y0, self._loss_fn, t0)
            success = is_adversarial(g.logits, y0, t0)
            best.update(idx, xa, g.loss, success)
            keep = ~success
            if not bool(keep.all()):
                idx, xa, x0, y0, e0, s0, mask = (t[keep] for t in (idx, xa, x0, y0, e0, s0, mask))
                grad, t0 = g.grad[keep], None if t0 is None else t0[keep]
                if lo is not None:
                    lo, hi = lo[keep], hi[keep]
                if idx.numel() == 0:
                    return
            else:
                grad = g.grad
            direction = steepest_direction(grad * mask, self.norm)
            if self.norm == "linf":
                xa = torch.clamp(xa + s0 * direction, lo, hi)
            else:
                xa = project_and_clip(x0, xa + s0 * direction, e0, self.norm)


# -------------------------------------------------------------------- patch-universal
@ATTACKS.register("patch-universal")
class PatchUniversal(Attack):
    """Universal patch (Brown et al. 2017): one `size x size` patch pasted at a random place.

    Fitting: `fit(model, x_train, y_train)` optimises the patch (values in [0, 1], random
    uniform start) by `steps` signed-gradient steps of `step_size`, each on a random minibatch
    of `batch_size` training images with the patch at a random location per image and at a
    random scale in [`scale_min`, `scale_max`] (one per step, bilinear resize). Untargeted
    (maximise the cross-entropy of the true label) unless `target_class` is set (minimise the
    cross-entropy of that class; success = predicted as it).
    Applying: the call pastes the fitted patch at scale 1 at a uniformly random location per
    image (seeded). Images the model misclassifies already come back unchanged.
    Without a fit, `unfitted` decides: "cross-fit" (default) splits the batch at random into
    two halves, fits one patch on each and pastes each half's images with the patch fitted on
    the OTHER half -- no image is attacked with a patch fitted on itself (needs >= 2 images;
    every batch gets its own two patches, so through `robustlab evaluate` the patch is
    universal per half-batch); "refuse" raises. `eps` and `norm` are accepted for the
    uniform interface and ignored: the threat model is the patch, not an Lp ball
    (`within_threat_model(x, x_adv)` checks it). `robustlab evaluate` counts a break only
    inside ITS eps-ball, so evaluate this attack with `--eps 1 --norm linf` (the whole pixel
    range); at a smaller eps its breaks are discarded (docs/patches.md).
    """

    quick_options = {"size": 3, "steps": 5, "batch_size": 6}

    needs_eps = False
    bounded = False
    supports_target = False  # the target of a universal patch is `target_class`

    OPTIONS = {
        "size": Option(8, "int", "patch side in pixels", low=1),
        "steps": Option(200, "int", "signed-gradient steps of the fit", low=1),
        "step_size": Option(0.02, "float", "step of the fit", low=0.0, low_open=True),
        "batch_size": Option(64, "int", "training images per fit step", low=1),
        "scale_min": Option(1.0, "float", "smallest scale of the patch while fitting", low=0.0,
                            low_open=True),
        "scale_max": Option(1.0, "float", "largest scale while fitting (>= scale_min)",
                            low=0.0, low_open=True),
        "target_class": Option(None, "int", "class the patch pushes to (null: untargeted)",
                               low=0, allow_none=True),
        "unfitted": Option("cross-fit", "choice", "without a fit: cross-fit the two halves of "
                           "the batch, or refuse", choices=UNFITTED),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_number(self.field("scale_max"), self.scale_max, self.scale_min, error=AttackError,
                     expected=f"a number >= scale_min ({self.scale_min:g})")
        self._patch: Tensor | None = None

    @property
    def patch(self) -> Tensor | None:
        """The fitted patch `[C, size, size]` in [0, 1] (None before `fit`)."""
        return self._patch

    def load_patch(self, patch: Tensor) -> PatchUniversal:
        """Use `patch` `[C, size, size]` (values in [0, 1], e.g. another attack's `.patch`)
        as the fitted patch; returns self."""
        ok = (isinstance(patch, Tensor) and patch.is_floating_point() and patch.dim() == 3
              and tuple(patch.shape[1:]) == (self.size, self.size))
        if not ok or not bool(torch.isfinite(patch).all()) or not (
                0.0 <= float(patch.min()) and float(patch.max()) <= 1.0):
            what = (f"a {patch.dtype} tensor of shape {tuple(patch.shape)}"
                    if isinstance(patch, Tensor) else type(patch).__name__)
            raise AttackError(f"patch: expected a float tensor [C, {self.size}, {self.size}] "
                              f"with values in [0, 1], got {what}")
        self._patch = patch.detach().clone()
        return self

    def within_threat_model(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """Bool `[N]`: the change lies in one `size x size` window (any values in [0, 1])."""
        return fits_in_window(x, x_adv, self.size)

    def _check_inputs(self, x: Tensor, y: Tensor, target: Tensor | None) -> None:
        super()._check_inputs(x, y, target)
        check_window(self.size, x, self.field("size"))
        if round(self.size * self.scale_max) > min(x.shape[2], x.shape[3]):
            raise AttackError(f"{self.field('scale_max')}: size * scale_max = "
                              f"{self.size * self.scale_max:g} exceeds the image side "
                              f"{min(x.shape[2], x.shape[3])}")
        if self._patch is not None and self._patch.shape[0] != x.shape[1]:
            raise AttackError(f"x: the patch was fitted on {self._patch.shape[0]}-channel "
                              f"images, got {x.shape[1]} channels")

    def _check_classes(self, k: int, y: Tensor, target: Tensor | None) -> None:
        super()._check_classes(k, y, target)
        if self.target_class is not None and self.target_class >= k:
            raise AttackError(f"{self.field('target_class')}: expected a class < {k} (the "
                              f"model's logits width), got {self.target_class}")

    def fit(self, model: nn.Module, x: Tensor, y: Tensor) -> PatchUniversal:
        """Optimise the patch on training images `x` `[N, C, H, W]` in [0, 1] with labels
        `y` `[N]` (see the class docstring); returns self. Same seed -> same patch."""
        self._check_inputs(x, y, None)
        if x.shape[0] == 0:
            raise AttackError("x: fit needs at least one training image, got 0")
        xc = x.detach().to(compute_dtype(model, x))
        with eval_mode(model), frozen_parameters(model), \
                weights_layout(model, weights_layout_for(self.memory_format, xc)):
            amodel = self.attack_model(model, xc)
            self._check_classes(self._class_counts.get(model, amodel, xc), y.long(), None)
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            self._patch = self._optimise(amodel, amodel.prepare(xc), y.long(), generator)
        return self

    def _targets(self, y: Tensor) -> Tensor | None:
        return None if self.target_class is None else torch.full_like(y, self.target_class)

    def _optimise(self, model: AttackModel, x: Tensor, y: Tensor,
                  generator: torch.Generator) -> Tensor:
        """The patch `[C, size, size]` fitted on `x` `[n, C, H, W]`, `y` `[n]`."""
        n, c, h, w = x.shape
        patch = torch.rand(c, self.size, self.size, generator=generator, device=x.device,
                           dtype=x.dtype)
        loss_fn: LossFn = ce_loss
        for _ in range(self.steps):
            rows = torch.randperm(n, generator=generator, device=x.device)[:self.batch_size]
            u = float(torch.rand((), generator=generator, device=x.device))
            side = max(1, round(self.size * (self.scale_min + u * (self.scale_max
                                                                   - self.scale_min))))
            top, left = random_corners(len(rows), h, w, side, generator, x.device)
            grad = self._patch_gradient(model, patch, x[rows], y[rows], side, top, left,
                                        loss_fn)
            patch = (patch + self.step_size * grad.sign()).clamp_(0.0, 1.0)
        return patch

    def _patch_gradient(self, model: AttackModel, patch: Tensor, x: Tensor, y: Tensor,
                        side: int, top: Tensor, left: Tensor, loss_fn: LossFn) -> Tensor:
        """d(sum of the loss over `x` `[b, ...]`)/d(patch) `[C, size, size]`: the model's input
        gradient (BPDA/EOT-aware) pulled back through the resize and the paste."""
        with torch.enable_grad():
            p = patch.detach().requires_grad_(True)
            scaled = p if side == self.size else F.interpolate(
                p[None], size=(side, side), mode="bilinear", align_corners=False)[0]
            xp = paste(scaled, x, top, left)
            g = model.gradient(model.prepare(xp.detach()), y, loss_fn, self._targets(y))
            return torch.autograd.grad(xp, p, g.grad.to(xp.dtype))[0]

    def _apply(self, model: AttackModel, patch: Tensor, x: Tensor, y: Tensor,
               generator: torch.Generator) -> Tensor:
        """`x` `[n, ...]` with `patch` at a random location per image; the clean images
        the model misclassifies already stay clean."""
        top, left = random_corners(x.shape[0], x.shape[2], x.shape[3], self.size, generator,
                                   x.device)
        x_adv = paste(patch.to(device=x.device, dtype=x.dtype), x, top, left)
        already = model.is_adversarial(x, y)  # misclassified already (targeted: too)
        return torch.where(eps_view(already, x), x, x_adv)

    def perturb(self, model, x, y, eps, target, generator):
        if self._patch is not None:
            return self._apply(model, self._patch, x, y, generator)
        if self.unfitted == "refuse":
            raise AttackError("patch-universal: not fitted; call fit(model, x_train, y_train) "
                              "first, or build it with unfitted='cross-fit'")
        n = x.shape[0]
        if n < 2:
            raise AttackError(f"x: cross-fitting a universal patch needs >= 2 images (two "
                              f"halves), got {n}; call fit(model, x_train, y_train) first")
        perm = torch.randperm(n, generator=generator, device=x.device)
        halves = (perm[: n // 2], perm[n // 2:])
        patches = [self._optimise(model, x[h], y[h], generator) for h in halves]
        out = x.clone()
        for half, other in zip(halves, reversed(patches), strict=True):
            out[half] = self._apply(model, other, x[half], y[half], generator)
        self.last_patches = patches
        return out
