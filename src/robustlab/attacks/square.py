"""Square Attack (Andriushchenko et al., ECCV 2020): score-based black-box random search.

Uses only the model's logits (no gradients, under `torch.no_grad()`), and minimises the
margin `z_y - max_{j != y} z_j` (targeted: maximises `z_t - max_{j != t} z_j`). Every query
changes one random square window per image; a candidate replaces the current point when it
raises the loss. Samples already adversarial are never queried again.

- linf: start from vertical stripes (each column of each channel at `x +- eps`); a query
  sets a random `s x s` window (per image, per channel a random sign) to `x +- eps`,
  resampling the signs when that would not change the window.
- l2: start from a 5 x 5 grid of "pseudo-Gaussian" bumps (two opposite-signed halves of
  concentric squares weighted `1 / (k + 1)^2`) with random signs, scaled to norm eps; a query
  moves the perturbation mass of a second random window into a new bump on the first
  window (per channel), then rescales the whole perturbation to norm eps.

- l1 (Croce et al. 2022, "Sparse-RS"; Croce & Hein 2021, "Mind the box"; the original
  AutoAttack's L1 Square): the same grid with bumps weighted `1 / (k + 1)^4` of unit L1 norm,
  projected (not scaled) onto the L1 ball ∩ [0, 1]^d; a query moves the mass of a second
  window into a new L1 bump on the first (per channel) and projects the whole point onto the
  ball ∩ the box (`attacks/l1.py`, exact).

The window side follows the original schedule: the fraction `p` of pixels changed starts at
`p_init` and halves at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of every 10,000
queries (the schedule is rescaled to `n_queries`). `n_queries` counts every forward pass per
sample and restart, the initial point included.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.l1 import l1_norm, project_l1_box
from robustlab.attacks.losses import margin_loss
from robustlab.attacks.norms import eps_view, lp_norm
from robustlab.attacks.progress import StepReporter, step_reporter
from robustlab.common.options import Option
from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.registry import ATTACKS

_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # per 10,000 queries
_SIGN_RETRIES = 10
_TINY = 1e-12


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """Fraction of pixels changed at query `it` (0-based, after the initial one)."""
    t = int(it / n_queries * 10000)
    return p_init / 2 ** sum(t > b for b in _P_HALVINGS)


def _unit(t: Tensor, norm: str) -> Tensor:
    """`t` divided by its L2 (`norm` "l2") or L1 ("l1") norm over all its values."""
    return t / (t.norm() if norm == "l2" else t.abs().sum())


def bump(a: int, b: int, device: torch.device, dtype: torch.dtype, norm: str = "l2") -> Tensor:
    """Concentric-squares bump `[a, b]` of unit L2 norm, centred at `(a // 2, b // 2)`.

    The square of half-width k around the centre adds `1 / (k + 1)^2` (k up to
    `max(a, b) // 2`), so the value at a pixel of Chebyshev distance d is the tail sum from d.
    `norm="l1"` (the L1 attack's bump, Croce et al. 2022): `1 / (k + 1)^4`, unit L1 norm.
    """
    if a == 0 or b == 0:
        return torch.zeros(a, b, device=device, dtype=dtype)
    k_max = max(a // 2, b // 2) + 1
    weights = 1.0 / torch.arange(1, k_max + 1, device=device, dtype=dtype) ** (
        2 if norm == "l2" else 4)
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    di = (torch.arange(a, device=device) - a // 2).abs()
    dj = (torch.arange(b, device=device) - b // 2).abs()
    out = tail[torch.maximum(di[:, None], dj[None, :])]
    return _unit(out, norm)


def square_pattern(s: int, device: torch.device, dtype: torch.dtype,
                   norm: str = "l2") -> Tensor:
    """The `[s, s]` update of the L2 attack: a positive bump on the top half, a negative one on
    the bottom half, unit L2 norm (`norm="l1"`: the L1 bumps, unit L1 norm)."""
    top = bump(s // 2, s, device, dtype, norm)
    bottom = -bump(s - s // 2, s, device, dtype, norm)
    out = torch.cat([top, bottom], dim=0)
    if norm == "l1":
        return out / out.abs().sum().clamp_min(_TINY)
    return out / out.norm().clamp_min(_TINY)


def _random_sign(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _windows(
    n: int, h: int, w: int, s: int, generator: torch.Generator, device: torch.device,
    last: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random `s x s` windows, one per image: (mask `[n, 1, h, w]`, top row `[n]`, left `[n]`).
    `last=False`: never at the last top / left position (the original L1 Square's draw)."""
    top = torch.randint(0, h - s + 1 if last else max(h - s, 1), (n,), generator=generator,
                        device=device)
    left = torch.randint(0, w - s + 1 if last else max(w - s, 1), (n,), generator=generator,
                         device=device)
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)
    return in_rows[:, None, :, None] & in_cols[:, None, None, :], top, left


def _place(patterns: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    """Paste per-image `patterns` `[n, s, s]` at (`top`, `left`) into zeros `[n, 1, h, w]`."""
    n, s = patterns.shape[0], patterns.shape[1]
    i = torch.arange(h, device=patterns.device)[None, :] - top[:, None]
    j = torch.arange(w, device=patterns.device)[None, :] - left[:, None]
    inside = ((i >= 0) & (i < s))[:, :, None] & ((j >= 0) & (j < s))[:, None, :]
    vals = patterns[
        torch.arange(n, device=patterns.device)[:, None, None],
        i.clamp(0, s - 1)[:, :, None],
        j.clamp(0, s - 1)[:, None, :],
    ]
    return (vals * inside)[:, None]


def _random_patterns(n: int, s: int, generator: torch.Generator, like: Tensor,
                     norm: str = "l2") -> Tensor:
    """`[n, s, s]` copies of `square_pattern(s, norm)`, each transposed with probability 1/2."""
    base = square_pattern(s, like.device, like.dtype, norm)
    flip = torch.rand(n, generator=generator, device=like.device) < 0.5
    return torch.where(flip[:, None, None], base.T, base)


def _bump_grid(x: Tensor, generator: torch.Generator, norm: str) -> Tensor:
    """The initial perturbation of the l2 / l1 attacks: a grid of `norm` patterns
    (`square_pattern`) of side `min(H, W) // 5`, each channel with a random sign."""
    n, c, h, w = x.shape
    s = max(min(h, w) // 5, 1)
    rows, cols = h // s, w // s
    top0, left0 = (h - rows * s) // 2, (w - cols * s) // 2
    delta = torch.zeros_like(x)
    for r in range(rows):
        for q in range(cols):
            pats = _random_patterns(n, s, generator, x, norm)
            signs = _random_sign((n, c, 1, 1), generator, x)
            top, left = r * s + top0, q * s + left0
            delta[:, :, top : top + s, left : left + s] += pats[:, None] * signs
    return delta


def _restart_report(reporter: StepReporter, offset: int, base: int
                    ) -> Callable[[int, Tensor], None]:
    """A restart's `report(query, best_loss)`: the reporter's step `offset + query`, with
    `base` + the restart's samples whose margin is still <= 0 robust."""
    return lambda it, loss: reporter.step(offset + it, lambda: base + int((loss <= 0).sum()))


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack, linf, l2 or l1 (black-box, margin loss; see the module docstring).

    After a call, `last_queries` `[N]` holds the forward passes each sample used (the clean
    one included).
    """

    quick_options = {"n_queries": 30}

    gradient_based = False
    needs_images = True
    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm (case-insensitive; l1: the L1 "
                       "Square of Croce et al. 2022, candidates projected onto the L1 ball ∩ "
                       "[0, 1]^d)", choices=(*ATTACK_NORMS, "l1")),
        "n_queries": Option(5000, "int", "queries per sample and restart, the initial point "
                            "included", low=1),
        "p_init": Option(0.8, "float", "initial fraction of the image a square covers (as in "
                         "AutoAttack, both norms)", low=0.0, high=1.0, low_open=True),
        "restarts": Option(1, "int", "runs, later ones afresh on the samples still robust",
                           low=1),
    }

    #: after a call: the queries `[N]` each sample used (None before the first call)
    last_queries: Tensor | None = None

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        with torch.no_grad():
            loss = margin_loss(model.logits(x), y, target)
            queries = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
            best = x.clone()
            best_loss = torch.full_like(loss, -torch.inf)
            done = (loss > 0) | (eps <= 0)
            adv = loss > 0  # for progress reports only
            reporter = step_reporter(self, self.restarts * (self.n_queries - 1), len(x))
            for r in range(self.restarts):
                idx = (~done).nonzero()[:, 0]
                if idx.numel() == 0:
                    break
                t = None if target is None else target[idx]
                report = None
                if reporter is not None:  # robust: outside idx (eps 0) + idx's not broken yet
                    report = _restart_report(reporter, r * (self.n_queries - 1),
                                             int((~adv).sum()) - idx.numel())
                xb, lb, q = self._run(model, x[idx], y[idx], eps[idx], t, generator, report)
                queries[idx] += q
                better = lb > best_loss[idx]  # keep the best restart per sample
                best[idx[better]], best_loss[idx[better]] = xb[better], lb[better]
                done[idx] = lb > 0
                adv[idx] = lb > 0
            self.last_queries = queries
            return best

    # --------------------------------------------------------------------------- one run
    def _run(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
        report: Callable[[int, Tensor], None] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One restart on `x` `[n, C, H, W]`: (best points, their loss `[n]`, queries `[n]`).
        `report(query, best_loss)` (optional) hears every query's end (progress).

        Random numbers are drawn for the whole batch `n` at every query and then indexed by
        the samples still robust, so freezing a sample does not shift the others' draws
        (except for the rare sign re-draws of the linf attack).
        """
        n = x.shape[0]
        ev = eps_view(eps, x)
        best = model.prepare(self._init(x, ev, generator))
        best_loss = margin_loss(model.logits(best), y, target)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        for it in range(self.n_queries - 1):
            active = (best_loss <= 0).nonzero()[:, 0]
            if active.numel() == 0:
                break
            p = p_schedule(self.p_init, it, self.n_queries)
            candidate = {"linf": self._linf_candidate, "l2": self._l2_candidate,
                         "l1": self._l1_candidate}[self.norm]
            cand = candidate(x, best, ev, p, active, generator)
            ya = y[active]
            ta = None if target is None else target[active]
            loss = margin_loss(model.logits(model.prepare(cand)), ya, ta)
            better = loss > best_loss[active]
            rows = active[better]
            best[rows] = cand[better]
            best_loss[rows] = loss[better]
            queries[active] += 1
            if report is not None:
                report(it + 1, best_loss)
        return best, best_loss, queries

    def _init(self, x: Tensor, ev: Tensor, generator: torch.Generator) -> Tensor:
        """The first point: linf stripes, the l2 grid of bumps at norm eps, or the l1 grid
        projected onto the L1 ball ∩ the box."""
        if self.norm == "linf":
            n, c, _, w = x.shape
            stripes = _random_sign((n, c, 1, w), generator, x)
            return (x + ev * stripes).clamp(0.0, 1.0)
        if self.norm == "l1":
            return project_l1_box(x, x + _bump_grid(x, generator, "l1"), ev)
        return self._l2_init(x, ev, generator)

    def _linf_candidate(
        self,
        x: Tensor,
        best: Tensor,
        ev: Tensor,
        p: float,
        active: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """linf query: a random window of each active image set to `x +- eps` (clipped)."""
        n, c, h, w = x.shape
        side = max(int(round(math.sqrt(p * h * w))), 1)
        side = min(side, max(min(h, w) - 1, 1))
        mask = _windows(n, h, w, side, generator, x.device)[0][active]
        xa, ba, ea = x[active], best[active], ev[active]
        signs = _random_sign((n, c, 1, 1), generator, x)[active]
        cand = torch.where(mask, (xa + ea * signs).clamp(0.0, 1.0), ba)
        channel_bits = 2 ** torch.arange(min(c, 62), device=x.device)
        for _ in range(_SIGN_RETRIES):  # a window that would not change wastes a query
            same = ~(cand != ba).flatten(1).any(1)
            if not bool(same.any()):
                break
            # Resample among the OTHER sign patterns: flip a uniformly drawn non-empty subset
            # of the channels (for one channel: flip the sign).
            code = torch.randint(1, 2 ** min(c, 62), (n,), generator=generator, device=x.device)
            flip = (code[:, None] & channel_bits) != 0
            if c > 62:
                flip = torch.cat([flip, flip.new_zeros(n, c - 62)], dim=1)
            flip = flip[active] & same[:, None]
            signs = torch.where(flip[:, :, None, None], -signs, signs)
            cand = torch.where(mask, (xa + ea * signs).clamp(0.0, 1.0), ba)
        return cand

    def _l2_init(self, x: Tensor, ev: Tensor, generator: torch.Generator) -> Tensor:
        """A grid of bumps of side `min(H, W) // 5` with random signs, at L2 norm eps."""
        delta = _bump_grid(x, generator, "l2")
        delta = delta / eps_view(lp_norm(delta, "l2"), x).clamp_min(_TINY)
        return (x + ev * delta).clamp(0.0, 1.0)

    def _l2_candidate(
        self,
        x: Tensor,
        best: Tensor,
        ev: Tensor,
        p: float,
        active: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """l2 query: move the mass of window 2 into a new bump on window 1 (per channel), then
        rescale the whole perturbation to norm eps."""
        n, c, h, w = x.shape
        side = max(int(round(math.sqrt(p * h * w))), 3)
        side += 1 - side % 2  # odd, so the bump has a centre pixel
        side = min(side, h, w)
        m1, top, left = _windows(n, h, w, side, generator, x.device)
        m2 = _windows(n, h, w, side, generator, x.device)[0][active]
        pats = _place(_random_patterns(n, side, generator, x), top, left, h, w)[active]
        signs = _random_sign((n, c, 1, 1), generator, x)[active]
        m1 = m1[active]
        xa, ea = x[active], ev[active]
        delta = best[active] - xa
        room = (ea.flatten() ** 2 - lp_norm(delta, "l2") ** 2).clamp_min(0.0)
        union = ((delta * (m1 | m2)) ** 2).sum(dim=(2, 3), keepdim=True)  # per channel
        old = delta * m1
        old = old / old.norm(dim=(2, 3), keepdim=True).clamp_min(_TINY)
        new = pats * signs + old
        new = new / new.norm(dim=(2, 3), keepdim=True).clamp_min(_TINY)
        new = new * (union + eps_view(room, x) / c).sqrt()
        delta = torch.where(m2, 0.0, delta)
        delta = torch.where(m1, new, delta)
        delta = delta / eps_view(lp_norm(delta, "l2"), x).clamp_min(_TINY) * ea
        return (xa + delta).clamp(0.0, 1.0)

    def _l1_candidate(
        self,
        x: Tensor,
        best: Tensor,
        ev: Tensor,
        p: float,
        active: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """l1 query (Croce et al. 2022's L1 Square, the original AutoAttack's): window 2's
        mass and window 1's move into a new L1 bump on window 1 (per channel: the free budget
        over the channels plus the two windows' mass, times the channel count, as the
        original scales it), then the whole point is projected onto the L1 ball ∩ the box."""
        n, c, h, w = x.shape
        side = max(int(round(math.sqrt(p * h * w))), 3)
        side += 1 - side % 2  # odd, so the bump has a centre pixel
        side = min(side, h, w)
        # the original's window draw, whose windows never reach the last row / column: on an
        # L1-trained MNIST CNN the full range left 1.6 points more robust (docs/attacks.md)
        m1, top, left = _windows(n, h, w, side, generator, x.device, last=False)
        m2 = _windows(n, h, w, side, generator, x.device, last=False)[0][active]
        pats = _place(_random_patterns(n, side, generator, x, "l1"), top, left, h, w)[active]
        signs = _random_sign((n, c, 1, 1), generator, x)[active]
        m1 = m1[active]
        xa, ea = x[active], ev[active]
        delta = best[active] - xa
        room = (ea.flatten() - l1_norm(delta)).clamp_min(0.0)
        union = (delta * (m1 | m2)).abs().sum(dim=(2, 3), keepdim=True)  # per channel
        old = delta * m1
        old = old / old.abs().sum(dim=(2, 3), keepdim=True).clamp_min(_TINY)
        new = pats * signs + old
        new = new / new.abs().sum(dim=(2, 3), keepdim=True).clamp_min(_TINY)
        new = new * (eps_view(room, x) / c + union) * c
        delta = torch.where(m2, 0.0, delta)
        delta = torch.where(m1, new, delta)
        return project_l1_box(xa, xa + delta, ea)
