"""The optional studies of `reproduce` (`Preset.studies`, issue #18), run after every
evaluation: the transfer matrices and the randomized-smoothing certificates.

The patch study needs no code here: it is one more evaluation per run (plan.py `_patch_jobs`).
Every study writes its own file and skips one already written (resume), so rerunning
`reproduce` computes only what is missing:

    OUT/studies/transfer-<dataset>-<protocol>-<budget>.json (+ .png)   experiments/transfer_study.py
    OUT/runs/<gaussian-aug run>/certify-sigma<S>.json (+ .png)          certification/study.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robustlab.common.errors import ConfigError
from robustlab.common.files import read_json
from robustlab.common.vocabulary import (
    HEALTH_OK,
    HEALTH_OVERFIT,
    HEALTH_UNFINISHED,
    SUMMARY_FILE,
)
from robustlab.experiments.plan import CERTIFY_ROLE, PATCH_LABEL, RunJob
from robustlab.experiments.presets import Preset

STUDIES_DIR = "studies"


def check_studies(preset: Preset, data_dir: str | None = None) -> None:
    """Every study setting checked before any compute (ConfigError naming the field); the
    patch study's attack options are checked with the other evaluations, its window against
    each dataset's image size here."""
    from robustlab.certification.settings import CertifySettings
    from robustlab.common.checks import check_int
    from robustlab.evaluation.transfer_matrix import TRANSFER_ATTACKS

    st, where = preset.studies, f"preset {preset.name}: studies"
    if st.transfer:
        for name in st.transfer_attacks:
            if name not in TRANSFER_ATTACKS:
                raise ConfigError(f"{where}.transfer_attacks: unknown attack {name!r}; "
                                  f"expected one of {', '.join(TRANSFER_ATTACKS)}")
        check_int(f"{where}.transfer_steps", st.transfer_steps, 1, error=ConfigError)
        check_int(f"{where}.transfer_n", st.transfer_n, 1, error=ConfigError)
    if st.certify:
        try:
            CertifySettings(sigma=st.certify_sigma, n=st.certify_n).validate()
        except ConfigError as err:
            raise ConfigError(f"{where}.certify: {err}") from None
        check_int(f"{where}.certify_images", st.certify_images, 1, error=ConfigError)
    if st.patch:
        _check_patch_fits(preset, data_dir, where)


def _check_patch_fits(preset: Preset, data_dir: str | None, where: str) -> None:
    from robustlab.common.checks import check_int
    from robustlab.data import load_dataset

    st_size = preset.studies.patch_size
    check_int(f"{where}.patch_size", st_size, 1, error=ConfigError)
    for ds in preset.datasets:
        h, w = load_dataset(ds.dataset, root=data_dir).info.image_size
        if st_size > min(h, w):
            raise ConfigError(f"{where}.patch_size: {st_size} does not fit in the {h}x{w} "
                              f"images of {ds.dataset}; expected at most {min(h, w)}")


def transfer_groups(jobs: list[RunJob], out: Path) -> dict[Path, tuple[float, list[Path]]]:
    """{output file: (eps, run folders)}: one transfer matrix per dataset, protocol and budget
    label, over the first seed's runs evaluated there (at least two)."""
    groups: dict[Path, tuple[float, list[Path]]] = {}
    first_seed = min((j.train["seed"] for j in jobs), default=0)
    for job in jobs:
        if job.role == CERTIFY_ROLE or job.train["seed"] != first_seed:
            continue
        for e in job.evals:  # at the run's budgets: not patches, not further threat models
            if e.label == PATCH_LABEL or e.settings.norm != job.train.get("norm", "linf"):
                continue
            name = f"transfer-{job.train['dataset']}-{job.protocol}-{e.label}.json"
            eps, runs = groups.setdefault(out / STUDIES_DIR / name, (e.settings.eps, []))
            runs.append(job.run_dir)
    return {path: g for path, g in groups.items() if len(g[1]) >= 2}


def not_learned(run_dir: Path) -> str | None:
    """Why a finished run is left out of the transfer matrices, as it is out of Table 1, or
    None when it learned: its training verdict (collapsed, non-finite loss, catastrophic
    overfitting), or the report's test signature of catastrophic overfitting in one of its
    evaluations (reporting/overfit.py: test FGSM above PGD by more than 15 points at the
    training eps), which training's guard does not see for every method."""
    from robustlab.reporting.overfit import eval_overfit_note

    summary = run_dir / SUMMARY_FILE
    if not summary.is_file():
        return HEALTH_UNFINISHED
    health = read_json(summary).get("health", HEALTH_OK)
    if health != HEALTH_OK:
        return health
    for path in sorted((run_dir / "eval").glob("*.json")):
        note = eval_overfit_note(read_json(path))
        if note:
            return f"{HEALTH_OVERFIT}: {note}"
    return None


def run_studies(preset: Preset, jobs: list[RunJob], out: Path, *, device: str,
                data_dir: str | None, log: Callable[[str], None] = print) -> list[Path]:
    """Run every enabled study that has no result file yet; returns the files written or
    found. Runs after the training and evaluation jobs, in this process."""
    st = preset.studies
    files: list[Path] = []
    if st.transfer:
        files += _transfer(st, jobs, out, device=device, data_dir=data_dir, log=log)
    if st.certify:
        files += _certify(st, jobs, device=device, data_dir=data_dir, log=log)
    return files


def _transfer(st, jobs, out: Path, *, device: str, data_dir: str | None, log) -> list[Path]:
    from robustlab.experiments.transfer_study import run_transfer_study

    files = []
    for path, (eps, runs) in transfer_groups(jobs, out).items():
        if path.is_file():
            log(f"study transfer {path.name}: cached")
            files.append(path)
            continue
        why = {r: not_learned(r) for r in runs}
        ok = [r for r in runs if why[r] is None]
        left_out = [f"{r.name} ({why[r]})" for r in runs if why[r] is not None]
        if len(ok) < 2:
            log(f"study transfer {path.name}: skipped, fewer than two runs learned "
                f"(left out: {'; '.join(left_out)})")
            continue
        files.append(run_transfer_study(
            ok, out=path, attacks=tuple(st.transfer_attacks), eps=eps, steps=st.transfer_steps,
            images=st.transfer_n, device=device, data_dir=data_dir, progress=False))
        log(f"study transfer {path.name}: {len(ok)} models"
            + (f" (left out, did not learn: {'; '.join(left_out)})" if left_out else ""))
    return files


def _certify(st, jobs, *, device: str, data_dir: str | None, log) -> list[Path]:
    from robustlab.certification.study import certify_run, default_out

    files = []
    for job in (j for j in jobs if j.role == CERTIFY_ROLE):
        path = default_out(job.run_dir, st.certify_sigma)
        if path.is_file():
            log(f"study certify {job.name}: cached")
        else:
            result = certify_run(str(job.run_dir), sigma=st.certify_sigma,
                                 images=st.certify_images, n=st.certify_n, device=device,
                                 data_dir=data_dir, progress=False)
            at = result["summary"]["certified_accuracy_at"]
            log(f"study certify {job.name}: certified accuracy "
                + ", ".join(f"{v:.3f} at r={r}" for r, v in at.items())
                + f" ({result['timing']['seconds']:.0f}s)")
        files.append(path)
    return files
