"""Report sections of the studies beside the evaluations (issue #18): transferability
(robustlab.transfer/1 files of `robustlab transfer`) and certified robustness by randomized
smoothing (the `certification` files of `robustlab certify`).

Where they are read from: for an experiment folder (with experiment.json) DIR/studies/
transfer-*.json, each job's RUN/certify-sigma*.json and DIR/studies/certify-*.json; for a plain
folder also DIR/transfer-*.json and every certify-sigma*.json under DIR. A section is left out
when it has no file. Reads JSON only (no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from robustlab.common.digest import check_digest
from robustlab.common.files import read_json
from robustlab.common.vocabulary import CERTIFY_KIND, TRANSFER_SCHEMA
from robustlab.reporting.fig_transfer import (
    ENSEMBLE_LABEL,
    attack_order,
    write_transfer_figure,
)
from robustlab.reporting.plot_style import FIG_WIDTH, RC, method_style, save

CERTIFY_FIGURE = "fig7_certified_radius.png"

Block = tuple[Any, ...]
Figure = tuple[Path, str]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- finding files
def _job_runs(root: Path, experiment: dict[str, Any] | None) -> list[Path]:
    """The run folders of the experiment's jobs (none without experiment.json)."""
    return [root / job["run_dir"] for job in (experiment or {}).get("jobs", [])
            if job.get("run_dir")]


def transfer_files(root: Path, experiment: dict[str, Any] | None) -> list[Path]:
    """DIR/studies/transfer-*.json, and for a plain folder DIR/transfer-*.json too."""
    files = set((root / "studies").glob("transfer-*.json"))
    if experiment is None:
        files |= set(root.glob("transfer-*.json"))
    return sorted(files)


STUDY_REDO = ("rerun the study that wrote it with --overwrite (robustlab transfer / certify), "
              "or delete it and rerun `robustlab reproduce`")


def certify_files(root: Path, experiment: dict[str, Any] | None) -> list[Path]:
    """RUN/certify-sigma*.json of every run folder, and DIR/studies/certify-*.json."""
    files = set((root / "studies").glob("certify-*.json"))
    if experiment is None:
        files |= set(root.rglob("certify-sigma*.json"))
    for run in _job_runs(root, experiment):
        files |= set(run.glob("certify-sigma*.json"))
    return sorted(files)


def _load(paths: list[Path], accept) -> list[tuple[Path, dict[str, Any]]]:
    """(path, dict) of the files whose content `accept` recognises (others are skipped)."""
    out = []
    for p in paths:
        data = check_digest(read_json(p), str(p), STUDY_REDO)  # damaged or edited: one line
        if isinstance(data, dict) and accept(data):
            out.append((p, data))
    return out


# ---------------------------------------------------------------------------- transferability
def transfer_table(data: dict[str, Any], attack: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of one attack: a row per source, the ensemble row, the clean row; a
    column per target; accuracy in %."""
    models, block = data["models"], data["attacks"][attack]
    headers = ["Source \\ target"] + [f"{m} (%)" for m in models]
    rows = [[src] + [_pct(v) for v in row] for src, row in zip(models, block["matrix"],
                                                              strict=True)]
    if block.get("ensemble") is not None:
        rows.append([ENSEMBLE_LABEL] + [_pct(v) for v in block["ensemble"]])
    rows.append(["clean (no attack)"] + [_pct(data["clean_acc"][m]) for m in models])
    return headers, rows


def transfer_reading(data: dict[str, Any], attack: str) -> str:
    """One sentence: mean off-diagonal (transferred) accuracy against the white-box diagonal,
    the ensemble's mean and the most transferable source."""
    models, block = data["models"], data["attacks"][attack]
    matrix = block["matrix"]
    k = len(models)
    diag = [matrix[i][i] for i in range(k)]
    off = [matrix[i][j] for i in range(k) for j in range(k) if i != j]
    per_source = [sum(matrix[i][j] for j in range(k) if j != i) / (k - 1) for i in range(k)]
    best = min(range(k), key=per_source.__getitem__)
    text = (f"**{attack}**: examples crafted on another model leave the targets "
            f"{100 * sum(off) / len(off):.1f} % accurate on average (off-diagonal mean), "
            f"against {100 * sum(diag) / k:.1f} % under the white-box attack (diagonal)")
    if block.get("ensemble") is not None:
        ens = block["ensemble"]
        text += f"; the leave-one-out ensemble source: {100 * sum(ens) / k:.1f} %"
    return text + (f". The most transferable source is {models[best]} "
                   f"({100 * per_source[best]:.1f} % on the others).")


def _transfer_caption(data: dict[str, Any], path: Path, root: Path) -> str:
    s = data["settings"]
    return (f"Transferability ({_rel(path, root)}): accuracy (%) of each target (column) on "
            f"adversarial examples crafted on each source (row), {s['norm']} eps = "
            f"{s['eps']:g}, {s['steps']} steps, highest-loss iterate, first {s['images']} test "
            "images; the diagonal (bold) is the white-box attack; the last row crafts on the "
            "mean logits of all other models. Darker = the attack transfers.")


def _not_learned_in(data: dict[str, Any], not_compared: dict[str, str]) -> str | None:
    """A warning naming the matrix's models that Table 1 does not compare (a file written
    before `reproduce` left them out, or by `robustlab transfer` by hand), or None."""
    bad = [f"{r['name']} ({not_compared[Path(r['path']).name]})" for r in data["runs"]
           if Path(r["path"]).name in not_compared]
    if not bad:
        return None
    return (f"**Not a finding:** {'; '.join(bad)} did not learn (Table 1, 'Not compared'). "
            "Their rows and columns, and the ensemble row that includes them, are shown as "
            "measured, not as findings on transferability; `reproduce` leaves such models out "
            "of a study it writes (delete the file and rerun to redo it without them).")


def transfer_section(files: list[tuple[Path, dict[str, Any]]], root: Path, figdir: Path,
                     not_compared: dict[str, str] | None = None
                     ) -> tuple[list[Block], list[Figure]]:
    """The "Transferability" section and its heat maps (fig6_transfer_<file stem>.png);
    `not_compared` = {run folder name: health} of the runs that did not learn."""
    if not files:
        return [], []
    doc: list[Block] = [("h2", "Transferability"),
                        ("p", "`robustlab transfer` (docs/transfer.md): each attack crafts "
                              "adversarial examples once on each source model and every "
                              "target is evaluated on them. An image counts as robust only "
                              "if the target gets it right clean and transferred, so no cell "
                              "exceeds the clean row. Models that did not learn (Table 1, "
                              "'Not compared') are left out. Accuracy in %; lower = "
                              "stronger.")]
    figs: list[Figure] = []
    for path, data in files:
        s = data["settings"]
        doc.append(("h3", f"{path.stem}: {data['runs'][0]['dataset']}, "
                          f"{s['norm']} eps = {s['eps']:g}"))
        warning = _not_learned_in(data, not_compared or {})
        if warning:
            doc.append(("p", warning))
        for attack in attack_order(data):
            doc.append(("p", transfer_reading(data, attack)))
            headers, rows = transfer_table(data, attack)
            doc.append(("table", headers, rows))
        fig = write_transfer_figure(data, figdir / f"fig6_transfer_{path.stem}.png")
        caption = _transfer_caption(data, path, root)
        doc.append(("img", fig, caption))
        figs.append((fig, caption))
    return doc, figs


# ------------------------------------------------------------------------- certified robustness
def _radii(files: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    keys = {k for _, d in files for k in d["summary"]["certified_accuracy_at"]}
    return sorted(keys, key=float)


def _run_name(path: Path, data: dict[str, Any]) -> str:
    run = (data.get("run") or {}).get("path")
    return Path(run).name if run else path.parent.name


def certify_table(files: list[tuple[Path, dict[str, Any]]]) -> tuple[list[str], list[list]]:
    """(headers, rows): one row per certification file."""
    radii = _radii(files)
    headers = (["Run", "Method", "sigma", "n", "Images"]
               + [f"r = {r} (%)" for r in radii] + ["Abstain (%)"])
    rows = []
    for path, d in files:
        s, summary = d["settings"], d["summary"]
        at = summary["certified_accuracy_at"]
        rows.append([{"text": _run_name(path, d), "hover": str(path)},
                     str((d.get("run") or {}).get("method") or "-"), f"{s['sigma']:g}",
                     f"{s['n']:,}", str(summary["images"])]
                    + [_pct(at.get(r)) for r in radii] + [_pct(summary.get("abstain_rate"))])
    return headers, rows


def _values(files: list[tuple[Path, dict[str, Any]]], key: str) -> str:
    vals = sorted({d["settings"][key] if key in d["settings"] else d["summary"][key]
                   for _, d in files})
    return " / ".join(f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in vals)


def certify_figure(files: list[tuple[Path, dict[str, Any]]], path: Path) -> Path:
    """Certified accuracy vs L2 radius, one line per file, legend outside the axes."""
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(FIG_WIDTH, 4.2 + 0.2 * len(files)))
        for i, (p, d) in enumerate(files):
            method = (d.get("run") or {}).get("method") or "?"
            style = dict(method_style(method))
            style["linestyle"] = ("-", "--", ":", "-.")[i % 4]
            run = d.get("run") or {}
            where = (f"{run['dataset']} / {run['model']}" if run.get("dataset")
                     else _run_name(p, d))
            label = f"{where}, {method} (sigma {d['settings']['sigma']:g})"
            curve = d["curve"]
            ax.plot(curve["radius"], [100 * v for v in curve["certified_accuracy"]],
                    label=label, color=style["color"], linestyle=style["linestyle"], lw=1.6)
        ax.set_xlabel("L2 radius (pixel units of [0, 1] images)")
        ax.set_ylabel("certified accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.set_title("Randomized smoothing: certified accuracy vs radius")
        # below the axes: run labels are long, and a legend at the side squeezes the axes
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                  ncol=1 if len(files) > 4 else 2)
        fig.tight_layout()
        return save(fig, path)


def certify_section(files: list[tuple[Path, dict[str, Any]]], root: Path,
                    figdir: Path) -> tuple[list[Block], list[Figure]]:
    """The "Certified robustness (randomized smoothing)" section and its figure."""
    if not files:
        return [], []
    headers, rows = certify_table(files)
    facts = (f"n = {_values(files, 'n')} noise samples per image (n0 = "
             f"{_values(files, 'n0')} to pick the class), alpha = {_values(files, 'alpha')}, "
             f"{_values(files, 'images')} test images")
    tops = sorted({round(d["max_certifiable_radius"], 3) for _, d in files
                   if d.get("max_certifiable_radius") is not None})
    if tops:
        facts += (f"; no radius above {' / '.join(f'{t:g}' for t in tops)} can be certified "
                  "with these n, alpha and sigma")
    caption = (f"Certified robustness: certified accuracy (%) vs L2 radius, one line per "
               f"certified run (CERTIFY, Cohen et al. 2019); {facts}.")
    fig = certify_figure(files, figdir / CERTIFY_FIGURE)
    doc: list[Block] = [
        ("h2", "Certified robustness (randomized smoothing)"),
        ("p", "`robustlab certify` (docs/certification.md): the fraction of test images the "
              "smoothed classifier gets right with a certified L2 radius of at least r "
              "(Clopper-Pearson bound; abstained images count as wrong). Accuracy in %; "
              f"{facts}."),
        ("table", headers, rows), ("img", fig, caption)]
    return doc, [(fig, caption)]


# ---------------------------------------------------------------------------------- both
def study_sections(root: Path, experiment: dict[str, Any] | None, figdir: Path,
                   not_compared: dict[str, str] | None = None
                   ) -> tuple[list[Block], list[Figure]]:
    """Both sections (each left out without files) and their figures; `not_compared` as in
    `transfer_section`."""
    transfer = _load(transfer_files(root, experiment),
                     lambda d: d.get("schema") == TRANSFER_SCHEMA)
    certify = _load(certify_files(root, experiment), lambda d: d.get("kind") == CERTIFY_KIND)
    t_doc, t_figs = transfer_section(transfer, root, figdir, not_compared)
    c_doc, c_figs = certify_section(certify, root, figdir)
    return t_doc + c_doc, t_figs + c_figs
