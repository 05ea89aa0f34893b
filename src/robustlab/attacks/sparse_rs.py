"""Sparse-RS, L0 pixel-wise (Croce, Singh, Andriushchenko, Flammarion, Hein, AAAI 2022,
"Sparse-RS: a versatile framework for query-efficient sparse black-box adversarial attacks";
the authors' code: github.com/fra31/sparse-rs, `rs_attacks.py`, norm "L0").

Score-based black-box random search over perturbations that change at most `k = eps` PIXELS
(a pixel of a `[C, H, W]` image counts once whatever its channels; `norms.pixel_changes`).
Only the model's logits are used (no gradients). Per image the attack keeps a set of `k`
perturbed pixel positions, each set to a random corner of the colour cube (every channel 0 or
1), and starts from `k` random positions with random colours. Every query swaps `m` random
positions of the set with `m` random positions outside it (the dropped pixels go back to the
clean image, the new ones get random colours; when `m = 1` the new colour differs from the
pixel's current one); the candidate replaces the current point when its loss is lower or it
is adversarial. Loss: untargeted the margin `z_y - max_{j != y} z_j`, targeted the
cross-entropy of the target (as the authors' code). Samples already adversarial are never
queried again.

The number of pixels swapped is `m = max(int(p * k), 1)`, with the authors' piecewise
schedule of `p`: `p_init` before query 1 (rescaled), then `p_init / 2, 4, 5, 6, 8, 10, 12, 15,
20` after 0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of every 10,000 queries (the
schedule is rescaled to `n_queries`, as the authors' `resc_schedule`); `constant_schedule`
keeps `p_init / 2`. The paper's settings: `n_queries` 10,000 and `p_init` 0.3 untargeted;
100,000 and 0.1 targeted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.losses import margin_loss
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

# the authors' L0 schedule: p_init divided by _P_DIVISORS[i] after _P_STEPS[i] of 10,000 queries
_P_STEPS = (0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_P_DIVISORS = (2, 4, 5, 6, 8, 10, 12, 15, 20)
P_INIT_UNTARGETED = 0.3  # the paper's alpha_init, untargeted L0
P_INIT_TARGETED = 0.1  # the paper's alpha_init, targeted L0
_SUCCESS_MARGIN = -1e-6  # a candidate with margin below this is adversarial (the authors')


def p_schedule(p_init: float, it: int, n_queries: int, constant: bool = False) -> float:
    """The fraction `p` of the `k` pixels swapped at query `it` (1-based), as the authors'
    `p_selection` for L0 with `resc_schedule=True`."""
    if constant:
        return p_init / 2
    t = int(it / n_queries * 10000)
    passed = [d for step, d in zip(_P_STEPS, _P_DIVISORS, strict=True) if t > step]
    return p_init / passed[-1] if passed else p_init


def _scores(logits: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
    """(margin `[n]`, loss `[n]`), both minimised: margin <= 0 is adversarial. Untargeted:
    both the margin `z_y - max_{j != y} z_j`; targeted: `max_{j != t} z_j - z_t` and the
    target's cross-entropy."""
    if target is None:
        m = -margin_loss(logits, y, None)
        return m, m
    return -margin_loss(logits, y, target), F.cross_entropy(logits, target, reduction="none")


@ATTACKS.register("sparse-rs")
class SparseRS(Attack):
    """Sparse-RS, L0 pixel-wise, untargeted or targeted (see the module docstring); `eps` is
    the number of pixels `k` (an integer).

    After a call, `last_queries` `[N]` holds the forward passes each sample used on perturbed
    points (at most `n_queries` per restart; the one clean pass that finds the samples already
    misclassified is not counted, as in the authors' code).
    """

    quick_options = {"n_queries": 30}
    gradient_based = False
    needs_images = True
    OPTIONS = {
        "norm": Option("l0", "choice", "threat-model norm: l0 only (eps = pixels changed, a "
                       "pixel counting once over its channels)", choices=("l0",)),
        "n_queries": Option(10000, "int", "queries per sample and restart, the initial point "
                            "included (the paper's 10,000 untargeted; 100,000 targeted)", low=1),
        "p_init": Option(None, "float", "initial fraction of the k pixels swapped per query "
                         f"(null: {P_INIT_UNTARGETED} untargeted, {P_INIT_TARGETED} targeted, "
                         "the paper's)", low=0.0, high=1.0, low_open=True, allow_none=True),
        "constant_schedule": Option(False, "bool", "keep p at p_init / 2 (the authors' "
                                    "--constant_schedule) instead of the piecewise decay"),
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
            margin = _scores(model.logits(x), y, target)[0]
            queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            best, best_loss = x.clone(), torch.full_like(margin, torch.inf)
            done = (margin < 0) | (eps < 1)
            p_init = self.p_init if self.p_init is not None else (
                P_INIT_UNTARGETED if target is None else P_INIT_TARGETED)
            for _ in range(self.restarts):
                for k in sorted({int(v) for v in eps[~done].tolist()}):  # one run per budget
                    idx = ((~done) & (eps == k)).nonzero()[:, 0]
                    t = None if target is None else target[idx]
                    xb, lb, mb, q = self._run(model, x[idx], y[idx], k, t, p_init, generator)
                    queries[idx] += q
                    better = lb < best_loss[idx]  # keep the best restart per sample
                    best[idx[better]], best_loss[idx[better]] = xb[better], lb[better]
                    won = mb < 0
                    best[idx[won]] = xb[won]
                    done[idx] = won
            self.last_queries = queries
            return best

    # --------------------------------------------------------------------------- one run
    def _run(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        k: int,
        target: Tensor | None,
        p_init: float,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One restart on `x` `[n, C, H, W]` with `k` pixels: (best points, their loss `[n]`,
        their margin `[n]`, queries `[n]`).

        `order` `[n, H*W]` is a permutation of each image's pixels whose first `k` entries are
        the perturbed set. Random numbers are drawn for the whole batch at every query (the
        swapped slots are shared by the batch, as in the authors' code) and then indexed by
        the samples still robust, so freezing a sample does not change the others' draws.
        """
        n, c, h, w = x.shape
        npix = h * w
        k = min(k, npix)
        flat = x.reshape(n, c, npix)
        order = torch.rand(n, npix, generator=generator, device=x.device).argsort(dim=1)
        best = flat.clone()
        best.scatter_(2, order[:, None, :k].expand(n, c, k), self._colours(n, c, k, generator, x))
        best = best.reshape(n, c, h, w)
        margin, loss = _scores(model.logits(model.prepare(best)), y, target)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        for it in range(1, self.n_queries):
            active = (margin >= 0).nonzero()[:, 0]
            if active.numel() == 0:
                break
            p = p_schedule(p_init, it, self.n_queries, self.constant_schedule)
            m = min(max(int(p * k), 1), k, max(npix - k, 1))
            drop = torch.randperm(k, generator=generator, device=x.device)[:m]
            add = (k + torch.randperm(npix - k, generator=generator, device=x.device)[:m]
                   if npix > k else drop)
            cand = self._candidate(flat, best, order, drop, add, active, generator)
            ya = y[active]
            ta = None if target is None else target[active]
            cm, cl = _scores(model.logits(model.prepare(cand)), ya, ta)
            queries[active] += 1
            better = (cl < loss[active]) | (cm < _SUCCESS_MARGIN)
            rows = active[better]
            best[rows], loss[rows], margin[rows] = cand[better], cl[better], cm[better]
            swapped = order[rows]
            swapped[:, drop], swapped[:, add] = order[rows][:, add], order[rows][:, drop]
            order[rows] = swapped
        return best, loss, margin, queries

    def _candidate(
        self,
        flat: Tensor,
        best: Tensor,
        order: Tensor,
        drop: Tensor,
        add: Tensor,
        active: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """The candidates of the `active` samples: the pixels at slots `drop` of `order` back
        to the clean image, those at slots `add` set to random colours (one new pixel: a
        colour other than its current one)."""
        n, c, npix = flat.shape
        m = drop.numel()
        colours = self._colours(n, c, m, generator, flat)
        if m == 1:  # a uniformly drawn OTHER corner: flip a random non-empty set of channels
            code = torch.randint(1, 2 ** min(c, 62), (n,), generator=generator,
                                 device=flat.device)
            flip = ((code[:, None] >> torch.arange(c, device=flat.device) % 62) & 1).bool()
            old = flat.gather(2, order[:, None, add].expand(n, c, 1))
            same = (colours == old).all(dim=1, keepdim=True)
            colours = torch.where(same & flip[:, :, None], 1 - colours, colours)
        cand = best.reshape(n, c, npix)[active].clone()
        fa, oa = flat[active], order[active]
        back = oa[:, None, drop].expand(-1, c, m)
        cand.scatter_(2, back, fa.gather(2, back))
        cand.scatter_(2, oa[:, None, add].expand(-1, c, m), colours[active])
        return cand.reshape(-1, *best.shape[1:])

    @staticmethod
    def _colours(n: int, c: int, m: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """`[n, c, m]` random corners of the colour cube (each channel 0 or 1)."""
        bits = torch.randint(0, 2, (n, c, m), generator=generator, device=like.device)
        return bits.to(like.dtype)
