"""Find and read result files into flat records (one per evaluated model and budget).

With OUT/experiment.json (written by `reproduce`) the job list says which eval files belong to
the experiment; otherwise every eval file under DIR (RUN/eval.json, RUN/eval/*.json) is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustlab.common.digest import check_digest
from robustlab.common.files import read_json, read_jsonl
from robustlab.common.result_checks import check_eval_values
from robustlab.common.vocabulary import (
    EVAL_FILE,
    EVAL_SCHEMA,
    EXPERIMENT_FILE,
    FLAG_COLLAPSED,
    FLAG_NON_FINITE,
    FLAG_OVERFIT,
    HEALTH_COLLAPSED,
    HEALTH_NON_FINITE,
    HEALTH_OK,
    HEALTH_OVERFIT,
    HEALTH_UNFINISHED,
    METRICS_FILE,
    RUN_CONFIG_FILE,
    SUMMARY_FILE,
    WEIGHTS_LAST,
)
from robustlab.reporting.overfit import mark_test_overfitting

CW_ATTACKS = ("cw-l2", "cw-linf")
METHOD_ORDER = ("standard", "pgd-at", "fgsm-rs", "free-at", "n-fgsm", "trades", "mart",
                "gradient-reg", "lipschitz", "hybrid", "hybrid-pgd", "hybrid-fgsm",
                "hybrid-fixed-eps", "hybrid-fixed-alpha", "mix")


def _read(path: Path) -> Any:
    return read_json(path)  # FileFormatError names a damaged file


def _read_optional(path: Path) -> dict[str, Any]:
    return _read(path) if path.is_file() else {}


def run_health(run_dir: Path, metrics: list[dict[str, Any]]) -> str:
    """The training verdict written by the loop (summary.json `health`); for runs made before
    it was written, the same rule read off metrics.jsonl (training/health.py)."""
    health = _read_optional(run_dir / SUMMARY_FILE).get("health")
    if health:
        return health
    last = metrics[-1] if metrics else {}
    return (HEALTH_NON_FINITE if any(m.get(FLAG_NON_FINITE) for m in metrics)
            else HEALTH_COLLAPSED if last.get(FLAG_COLLAPSED)
            else HEALTH_OVERFIT if last.get(FLAG_OVERFIT) else HEALTH_OK)


def protocol_of(recipe: str | None) -> str:
    """`paper` (the paper's hyper-parameters, also for runs made before recipes existed) or
    `recipe` (a method's working recipe)."""
    return "paper" if recipe in (None, "paper") else "recipe"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.is_file() else []


def method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def find_eval_files(root: Path) -> list[tuple[Path, Path, str | None]]:
    """[(eval file, run folder, role)] for the experiment or run folder `root`."""
    exp = root / EXPERIMENT_FILE
    if exp.is_file():
        data = _read(exp)
        out = []
        for job in data.get("jobs", []):
            for e in job["evals"]:
                path = root / e["path"]
                if path.is_file():
                    out.append((path, root / job["run_dir"], job.get("role")))
        return out
    files = sorted(set(root.rglob(EVAL_FILE)) | set(root.rglob("eval/*.json")))
    return [(f, f.parent if f.name == EVAL_FILE else f.parent.parent, None) for f in files]


def load_records(root: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Flat records (see `record_from_eval`) and the experiment description (or None)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"report: {root} is not a folder")
    experiment = _read(root / EXPERIMENT_FILE) if (root / EXPERIMENT_FILE).is_file() else None
    records = []
    for path, run_dir, role in find_eval_files(root):
        data = check_digest(_read(path), str(path))  # an edited eval file is refused
        if not isinstance(data, dict) or data.get("schema") != EVAL_SCHEMA:
            continue
        check_eval_values(data, str(path))  # a hand-edited 1.5 is not a 150 % accuracy
        records.append(record_from_eval(data, path, run_dir, role, root))
    if not records:
        raise FileNotFoundError(f"report: no evaluation results ({EVAL_SCHEMA} files) under "
                                f"{root}; run `robustlab evaluate RUN` or `robustlab reproduce`")
    mark_test_overfitting(records)
    records.sort(key=lambda r: (r["dataset"], r["protocol"], r["eps"], method_rank(r["method"]),
                                r["seed"]))
    return records, experiment


def record_from_eval(data: dict[str, Any], path: Path, run_dir: Path, role: str | None,
                     root: Path) -> dict[str, Any]:
    run, tr, s = data.get("run", {}), data.get("training", {}), data["settings"]
    attacks = data["attacks"]
    cw = next((a for a in CW_ATTACKS if a in attacks), None)
    pgd = attacks.get("pgd", {})
    per = data.get("per_sample", {})
    metrics = _read_jsonl(run_dir / METRICS_FILE)
    recipe = _read_optional(run_dir / RUN_CONFIG_FILE).get("train", {}).get("recipe")
    rec = {
        "run": run_dir.name, "run_dir": _relative(run_dir, root),
        "eval_file": _relative(path, root),
        "dataset": run.get("dataset"), "model": run.get("model"), "method": run.get("method"),
        "role": role, "seed": run.get("seed"), "train_eps": run.get("eps"),
        "defense": run.get("defense"), "recipe": recipe, "protocol": protocol_of(recipe),
        "weights": data.get("weights", WEIGHTS_LAST), "averaging": data.get("averaging"),
        # an eval of an interrupted run says so (evaluate writes training.complete)
        "health": (HEALTH_UNFINISHED if tr.get("complete") is False
                   else run_health(run_dir, metrics)),
        "label": data.get("label") or s.get("label") or _eps_label(s),
        "eps": s["eps"], "norm": s["norm"], "adaptive": s.get("adaptive", True),
        "n": data["n"], "clean": data["clean"]["acc"],
        "fgsm": attacks.get("fgsm", {}).get("acc"), "pgd": pgd.get("acc"),
        "cw": attacks.get(cw, {}).get("acc") if cw else None, "cw_attack": cw,
        "autoattack": attacks.get("autoattack", {}).get("acc"),
        "worst": data["worst_case"]["acc"], "gap": data["worst_case"]["gap"],
        # `robustlab evaluate --non-adaptive`: BPDA/EOT off, for comparison only (labelled)
        "non_adaptive_pgd": (data.get("non_adaptive") or {}).get("attacks", {})
                            .get("pgd", {}).get("acc"),
        "non_adaptive_worst": (data.get("non_adaptive") or {}).get("worst_case", {}).get("acc"),
        "pgd_gap": pgd.get("gap"), "mixed": data.get("mixed", {}).get("acc"),
        "pgd_conf": pgd.get("confidence", {}).get("mean"),
        "pgd_conf_correct": pgd.get("confidence", {}).get("correct"),
        "pgd_conf_incorrect": pgd.get("confidence", {}).get("incorrect"),
        "ece_clean": data["clean"].get("ece"), "ece_pgd": pgd.get("ece"),
        "pgd_success_rate": pgd.get("success_rate"),
        "cw_l2_median": (attacks.get("cw-l2", {}).get("perturbation", {})
                         .get("unbounded_l2_median")),
        "flagged": bool(data["audit"].get("flagged")), "flags": data["audit"].get("flags", []),
        "eval_time_s": data["timing"]["total_s"],
        "train_time_s": tr.get("train_time_s"), "epoch_time_s": tr.get("epoch_time_s_mean"),
        "peak_mem_mb": tr.get("peak_mem_mb"), "epochs": tr.get("epochs"),
        "n_train": tr.get("n_train"),
        # every evaluated attack, in the evaluation's order, and its accuracy (Table 1's
        # columns), the images the eps curve and the audit used, AutoAttack's counts
        "attacks": _attack_order(attacks, s),
        "attack_acc": {k: attacks[k].get("acc") for k in _attack_order(attacks, s)},
        "curve_n": _curve_n(data, s), "audit_n": _audit_n(data, s),
        "autoattack_version": _autoattack_version(s) if "autoattack" in attacks else None,
        "num_classes": data.get("model", {}).get("num_classes"),
        "mixed_attack": data.get("mixed", {}).get("attack"),
        # not written to results.csv:
        "_curve": data.get("curve", {}).get("points", []), "_distances": per.get("distances") or {},
        "_pgd_confidence": per.get("confidence", {}).get("pgd"),
        "_pgd_correct": per.get("correct", {}).get("pgd"),
        "_metrics": metrics, "_train_norm": run.get("norm"),
        "_audit": data["audit"].get("checks", []), "_audit_off": data["audit"].get("off"),
        "_attack_options": s.get("attack_options") or {},
    }
    return rec


def _eps_label(settings: dict[str, Any]) -> str:
    """The budget label of an evaluation that has none: `eps=0.3` (linf, as always), else
    with its norm (`l1 eps=10`), so evaluations at two norms never share a Table 1 block."""
    norm = settings.get("norm") or "linf"
    return f"eps={settings['eps']:g}" if norm == "linf" else f"{norm} eps={settings['eps']:g}"


def _attack_order(attacks: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The evaluated attacks in the order the evaluation ran them (settings `attacks`; the
    eval file's `attacks` object has its keys sorted)."""
    ran = [a for a in settings.get("attacks") or () if a in attacks]
    return ran + [a for a in attacks if a not in ran]


def _curve_n(data: dict[str, Any], settings: dict[str, Any]) -> int | None:
    """How many test images the eps curve used (its points say; else the settings; None when
    the evaluation's norm switched it off: `curve.off`)."""
    if data.get("curve", {}).get("off"):
        return None
    points = data.get("curve", {}).get("points") or []
    return points[0].get("n") if points else settings.get("curve_n")


def _audit_n(data: dict[str, Any], settings: dict[str, Any]) -> int | None:
    """How many test images the audit used; None when the evaluation's norm switched it off
    (`audit.off`: "audit: off at l1 (...)", kept in the record as `_audit_off`)."""
    if data["audit"].get("off"):
        return None
    return data["audit"].get("n") or settings.get("audit_n")


def _autoattack_version(settings: dict[str, Any]) -> str:
    """`standard` (AutoAttack's own counts) or the counts the evaluation set instead."""
    counts = (settings.get("attack_options") or {}).get("autoattack") or {}
    if not counts:
        return "standard"
    return "custom counts: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
