"""The settings of one certification, checked before any compute."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from robustlab.common.checks import check_int, check_number
from robustlab.common.errors import ConfigError


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
        check_int("--n0", self.n0, 1, error=ConfigError)
        check_int("--n", self.n, 1, error=ConfigError)
        check_number("--alpha", self.alpha, 0.0, 0.5, low_open=True, error=ConfigError)
        check_int("--batch-size", self.batch_size, 1, error=ConfigError)
        check_int("--seed", self.seed, 0, error=ConfigError)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
