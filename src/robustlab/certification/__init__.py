"""Certified L2 robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019).

`certify_images(model, x, y, CertifySettings(sigma=...), num_classes=K)` runs CERTIFY on every
image; `accuracy_curve` / `summarize` turn its per-sample radii into certified accuracy vs
radius. The `robustlab certify RUN` command (`robustlab.certification.study`) writes both to a
JSON file in the run folder (docs/certification.md).
"""

from robustlab.certification.bounds import (
    beta_cdf,
    beta_quantile,
    certified_radius,
    clopper_pearson_lower,
    max_certifiable_radius,
)
from robustlab.certification.curve import (
    REPORT_RADII,
    accuracy_curve,
    certified_accuracy,
    summarize,
)
from robustlab.certification.settings import CertifySettings
from robustlab.certification.smoothing import certify_images, certify_one, noisy_votes

__all__ = ["REPORT_RADII", "CertifySettings", "accuracy_curve", "beta_cdf", "beta_quantile",
           "certified_accuracy", "certified_radius", "certify_images", "certify_one",
           "clopper_pearson_lower", "max_certifiable_radius", "noisy_votes", "summarize"]
