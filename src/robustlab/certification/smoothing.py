"""Monte-Carlo CERTIFY for the Gaussian-smoothed classifier g(x) = argmax_c P(f(x + d) = c),
d ~ N(0, sigma^2 I) (Cohen, Rosenfeld & Kolter 2019).

Per image: `n0` noisy copies vote for the top class c_A; `n` fresh copies count how often f
returns c_A; the one-sided Clopper-Pearson lower bound p_A on that frequency (level alpha) gives
the certified L2 radius sigma * Phi^-1(p_A) when p_A > 0.5, else g abstains. The n0 + n copies
of one image are drawn and classified in batches of `batch_size` (the cost: (n0 + n) / batch
forward passes per image). The noise is added in [0, 1] pixel space, before the model's own
normalisation, and is not clipped (as in Cohen et al.).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.certification.bounds import certified_radius, clopper_pearson_lower
from robustlab.certification.settings import CertifySettings
from robustlab.common.modes import eval_mode


def image_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The noise generator of image `index`: seeded by (seed, index) through numpy's
    SeedSequence, so distinct pairs give unrelated streams."""
    state = int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(state & ((1 << 63) - 1))


@torch.no_grad()
def noisy_votes(model: nn.Module, x: Tensor, sigma: float, counts: tuple[int, ...], *,
                num_classes: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Class votes of `model` on noisy copies of one image `x` `[C, H, W]`: one int64 tensor
    `[num_classes]` per entry of `counts` (independent draws: counts[0] copies, then counts[1],
    ...). The copies are classified in batches of at most `batch_size`."""
    totals = [torch.zeros(num_classes, dtype=torch.int64, device=x.device) for _ in counts]
    owner = np.repeat(np.arange(len(counts)), counts)  # which tally each copy adds to
    for start in range(0, len(owner), batch_size):
        stop = min(start + batch_size, len(owner))
        noise = torch.randn((stop - start, *x.shape), generator=generator, device=x.device,
                            dtype=x.dtype)
        pred = model(x.unsqueeze(0) + sigma * noise).argmax(1)
        for which in np.unique(owner[start:stop]):
            rows = torch.from_numpy(np.flatnonzero(owner[start:stop] == which)).to(x.device)
            totals[which] += torch.bincount(pred[rows], minlength=num_classes)
    return totals


def certify_one(model: nn.Module, x: Tensor, settings: CertifySettings, *, num_classes: int,
                generator: torch.Generator) -> dict:
    """CERTIFY on one image `x` `[C, H, W]`: {"prediction": c_A or -1 (abstain), "count": the
    n-sample votes for c_A, "p_lower": p_A's lower bound, "radius": L2 radius in pixel units or
    None, "abstain": bool}."""
    select, estimate = noisy_votes(model, x, settings.sigma, (settings.n0, settings.n),
                                   num_classes=num_classes, batch_size=settings.batch_size,
                                   generator=generator)
    top = int(select.argmax())
    count = int(estimate[top])
    p_lower = clopper_pearson_lower(count, settings.n, settings.alpha)
    radius = certified_radius(p_lower, settings.sigma)
    return {"prediction": top if radius is not None else -1, "count": count,
            "p_lower": p_lower, "radius": radius, "abstain": radius is None}


def certify_images(model: nn.Module, x: Tensor, y: Tensor, settings: CertifySettings, *,
                   num_classes: int, progress: Callable[[int, int], None] | None = None
                   ) -> dict[str, list]:
    """CERTIFY on every image of `x` `[N, C, H, W]` (in [0, 1]) with labels `y` `[N]`.

    Returns per-sample lists (length N): index, label, prediction (-1: abstain), count,
    p_lower, radius (None when abstaining), abstain, correct (not abstaining and prediction ==
    label), seconds (wall time of the image). `progress(done, total)` is called after each image.
    """
    settings.validate()
    net_on_cpu = x.device.type == "cpu" and CPUKernels.may_apply(model)
    rows: dict[str, list] = {k: [] for k in ("index", "label", "prediction", "count", "p_lower",
                                             "radius", "abstain", "correct", "seconds")}
    with eval_mode(model), CPUKernels.when(net_on_cpu):
        for i in range(len(x)):
            start = time.perf_counter()
            out = certify_one(model, x[i], settings, num_classes=num_classes,
                              generator=image_generator(settings.seed, i, x.device))
            label = int(y[i])
            for key in ("prediction", "count", "p_lower", "radius", "abstain"):
                rows[key].append(out[key])
            rows["index"].append(i)
            rows["label"].append(label)
            rows["correct"].append(not out["abstain"] and out["prediction"] == label)
            rows["seconds"].append(time.perf_counter() - start)
            if progress is not None:
                progress(i + 1, len(x))
    return rows


def print_progress(every: int = 50) -> Callable[[int, int], None]:
    """A `progress` callback printing "certified i/N" to stderr every `every` images."""
    def report(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            print(f"certified {done}/{total}", file=sys.stderr, flush=True)
    return report
