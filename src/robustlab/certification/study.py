"""`robustlab certify RUN`: randomized-smoothing certification of a trained run (Cohen et al.
2019), written to RUN/certify-sigma<S>.json (+ a PNG of certified accuracy vs radius).

Every check happens before any compute: the run folder, the settings, --images against the
test set, and no output file overwritten without --overwrite (as `robustlab evaluate`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from robustlab.certification import (
    CertifySettings,
    accuracy_curve,
    certify_images,
    max_certifiable_radius,
    summarize,
)
from robustlab.certification.smoothing import print_progress
from robustlab.common.checks import check_int
from robustlab.common.device import resolve_device
from robustlab.common.digest import with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write, atomic_write_json, read_json
from robustlab.common.vocabulary import CERTIFY_KIND as KIND
from robustlab.common.vocabulary import CERTIFY_SCHEMA_VERSION as SCHEMA_VERSION
from robustlab.evaluation.runs import (
    claim_output,
    run_facts,
    training_facts,
)
from robustlab.runs.folder import RunFolder, RunFolderError

GAUSSIAN_METHOD = "gaussian-aug"


def default_out(run: str | Path, sigma: float) -> Path:
    """RUN/certify-sigma<S>.json, e.g. certify-sigma0.25.json."""
    return Path(run) / f"certify-sigma{sigma:g}.json"


def training_sigma(cfg: dict[str, Any]) -> float | None:
    """The noise std a run was trained with: a gaussian-aug run's option sigma (or its
    default), any other run's `noise_sigma` if > 0; None for a run trained without noise."""
    if cfg.get("method") != GAUSSIAN_METHOD:
        return float(cfg["noise_sigma"]) if cfg.get("noise_sigma") else None
    from robustlab.registry import METHODS

    options = cfg.get("method_options") or {}
    return float(options.get("sigma", METHODS.get(GAUSSIAN_METHOD).OPTIONS["sigma"].default))


def plan_certify(run: str, *, sigma: float | None, images: int | None, out: str | None,
                 overwrite: bool, **settings: Any) -> tuple[CertifySettings, Path, float | None]:
    """(settings, output path, training sigma) after every check; no compute yet. `sigma`
    None: the sigma the run was trained with."""
    folder = RunFolder(Path(run))
    if not folder.path.is_dir():
        raise RunFolderError(f"run folder {folder.path} does not exist")
    trained = training_sigma(folder.read_config())
    if sigma is None and trained is None:
        raise ConfigError(f"--sigma: run {run} was not trained with noise (gaussian-aug or "
                          "noise_sigma); pass the "
                          "noise std to certify with, e.g. --sigma 0.25")
    chosen = CertifySettings(sigma=trained if sigma is None else sigma, **settings).validate()
    check_int("--images", images, 1, allow_none=True, error=ConfigError)
    for line in chosen.warnings():  # valid but rarely meant (--n < --n0)
        print(line, file=sys.stderr)
    path = Path(out) if out else default_out(run, chosen.sigma)
    claim_output(path, overwrite=overwrite, is_ours=_is_certify_file)  # a certify JSON only
    return chosen, path, trained


def _is_certify_file(path: Path) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and data.get("kind") == KIND


def certify_run(run: str, *, sigma: float | None = None, images: int | None = 500,
                device: str = "auto", data_dir: str | None = None, out: str | None = None,
                overwrite: bool = False, progress: bool = True, figure: bool = True,
                **settings: Any) -> dict[str, Any]:
    """Certify the first `images` test images of `run` (None: all); `settings` are further
    `CertifySettings` fields (n0, n, alpha, batch_size, seed). Writes and returns the JSON."""
    from robustlab.runs.load import load_run

    chosen, path, trained = plan_certify(run, sigma=sigma, images=images, out=out,
                                         overwrite=overwrite, **settings)
    loaded = load_run(run, device=device, data_dir=data_dir)
    test = loaded.data.test
    if images is not None and images > len(test):
        raise ConfigError(f"--images: {images} exceeds the {len(test)} test images of run "
                          f"{run}; pass at most {len(test)}")
    count = len(test) if images is None else images
    dev = resolve_device(device)
    start = time.perf_counter()
    rows = certify_images(loaded.model, test.x[:count].to(dev), test.y[:count], chosen,
                          num_classes=loaded.data.info.num_classes,
                          progress=print_progress() if progress else None)
    seconds = time.perf_counter() - start
    result = build_result(rows, chosen, seconds=seconds, trained=trained, device=str(dev))
    result["run"] = run_facts(loaded.folder.path, loaded.cfg.to_dict())
    result["training"] = training_facts(loaded.folder)
    atomic_write_json(path, with_digest(result))  # the report checks its sha256
    if figure:
        write_figure(path.with_suffix(".png"), result)
    print(format_summary(result, run, path))
    return result


def build_result(rows: dict[str, list], settings: CertifySettings, *, seconds: float,
                 trained: float | None, device: str) -> dict[str, Any]:
    """The certification JSON (docs/certification.md) from `certify_images`' rows."""
    per_image = rows.pop("seconds")
    summary = summarize(rows["radius"], rows["correct"], rows["abstain"])
    samples = len(per_image) * (settings.n0 + settings.n)
    return {
        "kind": KIND, "schema_version": SCHEMA_VERSION,
        "algorithm": "CERTIFY (Cohen, Rosenfeld & Kolter 2019), one-sided Clopper-Pearson",
        "noise": "Gaussian, [0, 1] pixel space, before the model's normalisation, not clipped",
        "settings": settings.to_dict(), "training_sigma": trained,
        "max_certifiable_radius": max_certifiable_radius(settings.n, settings.alpha,
                                                         settings.sigma),
        "summary": summary, "curve": accuracy_curve(rows["radius"], rows["correct"]),
        "per_sample": rows,
        "timing": {"seconds": seconds, "seconds_per_image": seconds / max(len(per_image), 1),
                   "samples_per_second": samples / seconds if seconds > 0 else None,
                   "device": device, "torch_threads": torch.get_num_threads()},
    }


def format_summary(result: dict[str, Any], run: str, path: Path) -> str:
    """A few lines for the terminal: certified accuracy at the report radii, time, file."""
    s, t = result["summary"], result["timing"]
    cells = "  ".join(f"r={r}: {acc:.3f}" for r, acc in s["certified_accuracy_at"].items())
    sigma = result["settings"]["sigma"]
    return (f"{run}  sigma={sigma:g}  certified accuracy  {cells}\n"
            f"  {s['images']} images, {s['abstained']} abstained; {t['seconds']:.1f}s "
            f"({t['seconds_per_image']:.2f}s/image, {t['torch_threads']} threads)\n"
            f"  wrote {path}")


def write_figure(path: Path, result: dict[str, Any]) -> None:
    """Certified accuracy vs L2 radius as a PNG at `path` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(curve["radius"], curve["certified_accuracy"], lw=1.5)
    ax.set_xlabel("L2 radius (pixel units)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"randomized smoothing, sigma={result['settings']['sigma']:g}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    print(f"  figure {path}", file=sys.stderr)
