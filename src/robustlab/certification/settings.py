"""The settings of one certification, checked before any compute."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from robustlab.common.checks import check_int, check_number, check_seed
from robustlab.common.errors import ConfigError

#: The largest noise std `certify` takes, in [0, 1] pixel units. A noisy copy x + d of an image
#: in [0, 1] carries at most 1 / sigma^2 of its energy per pixel against the noise's: already at
#: sigma = 1 the noise spans the whole pixel range (Cohen et al. use 0.12-1.0 on ImageNet), at
#: 10 the image is 1 % of a copy and the smoothed classifier sees noise only. A larger sigma is
#: a typo (e.g. 0-255 units); at 1e6 `certify` hung building its curve (one point per 0.01 of
#: radius up to the largest, about 4 sigma; `curve.py` now caps the points too).
SIGMA_MAX = 10.0


@dataclass(frozen=True)
class CertifySettings:
    """CERTIFY's parameters (Cohen et al. 2019, Algorithm "certify").

    `sigma`: std of the Gaussian noise in [0, 1] pixel units (added before the model's own
    normalisation); `n0`: noise samples that select the top class; `n`: samples that estimate
    its probability; `alpha`: the bound fails with probability at most alpha per image;
    `batch_size`: noisy copies per forward pass; `seed`: the noise of image i is drawn from a
    generator seeded by (seed, i), so a result does not depend on which images ran before it.
    """

    sigma: float
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    batch_size: int = 1000
    seed: int = 0

    def validate(self) -> CertifySettings:
        """The settings with every value checked (ConfigError naming the CLI flag)."""
        check_number("--sigma", self.sigma, 0.0, low_open=True, error=ConfigError)
        check_number("--sigma", self.sigma, high=SIGMA_MAX, error=ConfigError,
                     expected=f"a noise std <= {SIGMA_MAX:g} in pixel units of [0, 1] "
                              "images (at 10 a noisy copy is 99 % noise)")
        check_int("--n0", self.n0, 1, error=ConfigError)
        check_int("--n", self.n, 1, error=ConfigError)
        check_number("--alpha", self.alpha, 0.0, 0.5, low_open=True, error=ConfigError)
        check_int("--batch-size", self.batch_size, 1, error=ConfigError)
        check_seed("--seed", self.seed, error=ConfigError)
        return self

    def warnings(self) -> list[str]:
        """Lines for settings that are valid but rarely meant. `n` < `n0`: CERTIFY selects the
        class with the n0 samples and bounds its probability with the n samples alone, so the
        certified radius is limited by n (Cohen et al. use n0 = 100, n = 100,000); the result
        is sound, only weak -- hence a warning, not a refusal."""
        if self.n >= self.n0:
            return []
        from robustlab.certification.bounds import max_certifiable_radius

        top = max_certifiable_radius(self.n, self.alpha, self.sigma)
        cap = ("every image will abstain" if top == 0 else
               f"no radius above {top:.3g} can be certified")
        return [f"warning: --n {self.n} is smaller than --n0 {self.n0}: the radius is bounded "
                f"with the n samples alone, so {cap} (the usual choice is n >> n0, e.g. "
                "--n0 100 --n 10000)"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
