"""The "Adversarial patches" report section: the evaluations under the budget label "patch"
(reproduce's patch study, experiments/plan.py `_patch_jobs`; docs/patches.md).

A patch's threat model is its window, not an eps-ball, so these evaluations are kept out of
Table 1, its figures and the claims check, and shown here instead: one table per dataset and
protocol, a row per model that learned.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from robustlab.common.vocabulary import HEALTH_OK, PATCH_LABEL
from robustlab.reporting.collect import method_rank

Block = tuple[Any, ...]


def split_patch_records(records: list[dict[str, Any]]
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every other record, the patch study's records)."""
    return ([r for r in records if r["label"] != PATCH_LABEL],
            [r for r in records if r["label"] == PATCH_LABEL])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _patch_sizes(records: list[dict[str, Any]]) -> str:
    """The window sides the evaluations used (their settings' attack options)."""
    sizes = {o["size"] for r in records for o in r["_attack_options"].values() if "size" in o}
    return " / ".join(f"{s}x{s}" for s in sorted(sizes)) or "the attacks' default"


def patch_section(records: list[dict[str, Any]]) -> list[Block]:
    """The section (empty without patch records)."""
    if not records:
        return []
    attacks = list(dict.fromkeys(a for r in records for a in r["attacks"]))
    doc: list[Block] = [
        ("h2", "Adversarial patches"),
        ("p", f"Accuracy (%) under patch attacks (docs/patches.md): `patch-local` is PGD on "
              f"one {_patch_sizes(records)} window per image at a searched location "
              "(LaVAN setting), `patch-universal` one patch for all images (Brown et al. "
              "2017), cross-fitted on the other half of the batch so no image is attacked "
              "with a patch fitted on itself. Values inside the window are unrestricted "
              f"(eps 1), on the first {min(r['n'] for r in records)} test images. Worst = per "
              "image, over clean and every patch attack. Models that did not learn are listed "
              "below each table, not compared.")]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["protocol"])].append(r)
    for (dataset, protocol), recs in sorted(groups.items()):
        ok = sorted((r for r in recs if r["health"] == HEALTH_OK),
                    key=lambda r: (method_rank(r["method"]), r["seed"]))
        rows = [[r["method"], str(r["seed"]), _pct(r["clean"]),
                 *(_pct(r["attack_acc"].get(a)) for a in attacks), _pct(r["worst"])]
                for r in ok]
        doc += [("h3", f"{dataset}, {protocol} protocol"),
                ("table", ["method", "seed", "clean", *attacks, "worst"], rows)]
        failed = [f"{r['method']} ({r['health']})" for r in recs if r["health"] != HEALTH_OK]
        if failed:
            doc.append(("p", "Not compared (did not learn): " + ", ".join(failed) + "."))
    return doc
