"""`robustlab benchmark`: RobustBench's protocol on one model. The first n test images (10,000 by
default: CIFAR-10's whole test set), AutoAttack standard at the original counts (robustlab's
`autoattack`), the entry's eps and norm (a zoo model's card's, a run's training budget; `--eps`
/ `--norm` override them, and the output says so). Clean and AutoAttack accuracy are printed
with their 95 % two-sided Clopper-Pearson intervals (`certification.bounds`, the exact binomial
interval robustlab's certification uses one-sidedly), and written to a JSON in RobustBench's
`model_info` format plus robustlab's fields. When the model's published figures are known (a
RobustBench entry's leaderboard numbers, a zoo model's card) the difference is printed with
whether the figure lies inside the interval. Every check runs before any compute. Here (the
experiments layer) because it needs both the evaluation and the certification layer; see
docs/benchmark.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.attacks import AttackError
from robustlab.attacks.autoattack import (
    STANDARD_QUERIES,
    STANDARD_STEPS,
    STANDARD_TARGET_CLASSES,
)
from robustlab.certification.bounds import clopper_pearson_interval
from robustlab.common.checks import check_int, check_l2_budget
from robustlab.common.device import resolve_device
from robustlab.common.digest import with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json, read_json
from robustlab.common.vocabulary import BENCHMARK_SCHEMA, WEIGHTS_AVERAGED
from robustlab.evaluation import EvalSettings, EvalSettingsError, evaluate_model
from robustlab.evaluation.api import check_model_for_evaluation
from robustlab.evaluation.partial import partial_path
from robustlab.evaluation.runs import claim_output
from robustlab.models.probe import input_dtype
from robustlab.runs.checkpoint import weights_digest

FULL_TEST_SET = 10_000  # RobustBench's n_examples for CIFAR-10 / CIFAR-100
CONFIDENCE = 0.95
INTERVAL = "95% two-sided Clopper-Pearson (exact binomial) interval"
ATTACK = {"name": "autoattack", "version": "standard", "steps": STANDARD_STEPS,
          "n_target_classes": STANDARD_TARGET_CLASSES, "n_queries": STANDARD_QUERIES}
# RobustBench's model_info fields (model_info/<dataset>/<threat model>/<name>.json), in its order
MODEL_INFO_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes",
                     "dataset", "venue", "architecture", "eps", "clean_acc", "reported",
                     "autoattack_acc", "footnote", "unreliable")


@dataclass
class Source:
    """The model to benchmark, known before any compute: where it comes from, its test set,
    its budget (and where that came from), its published figures and its model_info facts.
    `load(device, data_dir)` returns (model, test split, number of classes)."""

    kind: str
    name: str
    dataset: str
    eps: float | None
    norm: str
    eps_text: str | None
    budget_from: str
    default_out: Path
    load: Any
    published: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    guard: Any = contextlib.nullcontext  # held from the output's claim to its write
    images_default: bool = False  # --images not given: RobustBench's full test set


def run_benchmark(source: Source, *, images: int | None = None,
                  eps: float | None = None, norm: str | None = None, batch_size: int = 500,
                  seed: int = 0, device: str = "auto", data_dir: str | None = None,
                  out: str | None = None, overwrite: bool = False, progress: bool = False,
                  command: str | None = None) -> dict[str, Any]:
    """Benchmark `source` (`robustbench_source`, `pretrained_source`, `run_source`,
    `model_source`); returns the written JSON's dict. `images`: the first n test images
    (None: `FULL_TEST_SET`)."""
    source.images_default = images is None
    images = check_int("--images", FULL_TEST_SET if images is None else images, 1,
                       error=ConfigError)
    overridden = _override(source, eps, norm)
    evs = _settings(source, images, batch_size, seed)
    path = Path(out) if out else source.default_out
    with source.guard():
        claim_output(path, overwrite=overwrite, is_ours=is_benchmark_file)
        return _measure_and_write(source, evs, path, overridden=overridden, device=device,
                                  data_dir=data_dir, progress=progress, command=command)


def _measure_and_write(source: Source, evs: EvalSettings, path: Path, *,
                       overridden: list[str], device: str, data_dir: str | None,
                       progress: bool, command: str | None) -> dict[str, Any]:
    dev = resolve_device(device)
    model, test, classes = source.load(dev, data_dir)
    _check_data(source, evs, test)
    check_model_for_evaluation(model, test.x, test.y, evs, num_classes=classes)
    t0 = time.perf_counter()
    # resumable: each finished batch of each attack is kept beside the JSON (a 10,000-image
    # AutoAttack is hours on a CPU); a rerun after a kill attacks only the batches it lacks
    result = evaluate_model(model, test.x.to(device=dev, dtype=input_dtype(model)),
                            test.y.to(dev), evs, num_classes=classes, progress=progress,
                            resume=path)
    seconds = time.perf_counter() - t0
    data = benchmark_record(source, result, model=model, overridden=overridden,
                            seconds=seconds, device=str(dev), command=command)
    written = with_digest(data)
    atomic_write_json(path, written)
    partial_path(path).unlink(missing_ok=True)  # its finished batches: no longer needed
    print(format_benchmark(written, source))
    print(f"  wrote {path}\n")
    return written


def _override(source: Source, eps: float | None, norm: str | None) -> list[str]:
    """Apply --eps / --norm to `source`; returns the flags that changed its budget (a model
    file names none: there they are the budget, not an override)."""
    if source.eps is None:
        source.eps, source.norm = eps, source.norm if norm is None else str(norm).lower()
        eps = norm = None
    changed = []
    if eps is not None and eps != source.eps:
        source.eps, source.eps_text = eps, None
        changed.append("--eps")
    if norm is not None and str(norm).lower() != source.norm:
        source.norm = str(norm).lower()
        changed.append("--norm")
    if changed:
        source.budget_from = f"{' and '.join(changed)} (instead of the {source.budget_from}'s)"
    if source.eps is None:
        raise ConfigError(f"--eps: required for {source.kind} {source.name} (it names no "
                          "budget: e.g. 0.3 for MNIST, 8/255 = 0.031 for CIFAR-10)")
    return changed


def _settings(source: Source, images: int, batch_size: int, seed: int) -> EvalSettings:
    """AutoAttack standard at the original counts, nothing else (no curve, no audit)."""
    try:
        evs = EvalSettings(attacks=("autoattack",), eps=float(source.eps), norm=source.norm,
                           n=images, batch_size=batch_size, seed=seed, curve_attack=None,
                           audit=False, label="benchmark").validate()
        from robustlab.evaluation.attack_runner import build_attacks

        build_attacks(evs)
    except (EvalSettingsError, AttackError, TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    return evs


def _check_data(source: Source, evs: EvalSettings, test: Any) -> None:
    if evs.n > len(test):
        default = " (the default, RobustBench's full test set)" if source.images_default \
            else ""
        raise ConfigError(f"--images: {evs.n}{default} exceeds the {len(test)} test images of "
                          f"{source.dataset}; pass --images {len(test)} or fewer")
    if evs.norm == "l2":
        check_l2_budget("--eps", evs.eps, test.x[0].numel(), where=source.dataset,
                        error=ConfigError)


def is_benchmark_file(path: Path) -> bool:
    """A JSON `robustlab benchmark` wrote (what --overwrite may replace)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == BENCHMARK_SCHEMA


# ---- the record --------------------------------------------------------------------------

def accuracy_with_interval(correct: int, n: int) -> dict[str, Any]:
    """Accuracy in % with its `INTERVAL` in %, from `correct` of `n` images."""
    low, high = clopper_pearson_interval(correct, n, CONFIDENCE)
    return {"correct": correct, "n": n, "acc": 100.0 * correct / n,
            "interval": [100.0 * low, 100.0 * high]}


def benchmark_record(source: Source, result: dict[str, Any], *, model: Any,
                     overridden: list[str], seconds: float, device: str,
                     command: str | None) -> dict[str, Any]:
    """RobustBench's model_info fields (measured accuracies as its "%.2f" strings, unknown
    facts null) followed by robustlab's own."""
    from robustlab.runs.folder import environment_info

    n = int(result["n"])
    bits = result["per_sample"]["correct"]
    clean = accuracy_with_interval(bits["clean"].count("1"), n)
    robust = accuracy_with_interval(bits["autoattack"].count("1"), n)
    env = environment_info()
    info = {k: source.info.get(k) for k in MODEL_INFO_FIELDS}
    info.update(dataset=source.dataset, eps=source.eps_text or f"{source.eps:g}",
                clean_acc=f"{clean['acc']:.2f}", autoattack_acc=f"{robust['acc']:.2f}",
                number_forward_passes=None if getattr(model, "randomized", False) else 1)
    per_image = {"clean": bits["clean"], "autoattack": bits["autoattack"]}
    published = _compared(source.published, clean, robust, per_image) if not overridden \
        else None
    return {
        **info, "schema": BENCHMARK_SCHEMA, "source": {"kind": source.kind,
                                                       "name": source.name, **source.facts},
        "threat_model": {"linf": "Linf", "l2": "L2"}.get(source.norm, source.norm),
        "norm": source.norm, "eps_value": float(source.eps), "budget_from": source.budget_from,
        "budget_overridden": overridden, "n": n, "first_n_test_images": True,
        "clean": clean, "autoattack": robust, "clean_acc_interval": clean["interval"],
        "autoattack_acc_interval": robust["interval"], "interval": INTERVAL,
        "attack": dict(ATTACK), "published": published,
        "published_not_compared": ("the budget was overridden" if overridden and
                                   source.published else None),
        "weights_sha256": _weights_digest(model), "commit": env.get("git_commit"),
        "robustlab": env.get("robustlab"), "torch": env.get("torch"), "device": device,
        "seconds": seconds, "batch_size": result["settings"]["batch_size"],
        "seed": result["settings"]["seed"], "command": command,
        "per_image": per_image,  # "1" = correct (clean) / robust (AutoAttack), image by image
    }


def _weights_digest(model: Any) -> str | None:
    """`runs.checkpoint.weights_digest` of the evaluated model's state dict (summary.json's
    `weights_sha256` for a run's weights; what the zoo checks)."""
    try:
        return weights_digest(model.state_dict())
    except (AttributeError, RuntimeError, TypeError):
        return None


def _compared(published: dict[str, Any] | None, clean: dict[str, Any],
              robust: dict[str, Any], per_image: dict[str, str]) -> dict[str, Any] | None:
    """The published figures with each measured one's difference and whether the published
    value lies in the measured interval; when the source published its per-image results
    (a zoo card's `per_image`), also how many of the first n images differ, per part."""
    if not published:
        return None
    out = {k: v for k, v in published.items() if k != "per_image"}
    for key, measured in (("clean_acc", clean), ("autoattack_acc", robust)):
        value = published.get(key)
        if value is None:
            continue
        low, high = measured["interval"]
        out[f"{key}_difference"] = measured["acc"] - float(value)
        out[f"{key}_inside_interval"] = low <= float(value) <= high
    theirs = published.get("per_image") or {}
    n = len(per_image["clean"])
    if all(len(theirs.get(part) or "") >= n for part in per_image):
        out["per_image_differences"] = {
            "n": n, **{part: sum(a != b for a, b in zip(bits, theirs[part][:n], strict=True))
                       for part, bits in per_image.items()}}
    return out


def format_benchmark(data: dict[str, Any], source: Source) -> str:
    """The printed summary: the protocol, then clean and AutoAttack accuracy with intervals
    and the published figures' differences."""
    eps = f"{data['eps_value']:.4g}" + (f" = {source.eps_text}" if source.eps_text else "")
    lines = [f"benchmark {source.kind} {source.name} on {data['dataset']}: the first "
             f"{data['n']} test images, AutoAttack standard (steps 100, 9 target classes, "
             f"5000 queries), {data['norm']} eps {eps} ({source.budget_from})"]
    published = data.get("published") or {}
    for label, key, part in (("clean accuracy", "clean_acc", "clean"),
                             ("AutoAttack accuracy", "autoattack_acc", "autoattack")):
        m = data[part]
        line = (f"  {label:<20} {m['acc']:6.2f} %  ({m['correct']}/{m['n']}; 95% CI "
                f"{m['interval'][0]:.2f} to {m['interval'][1]:.2f}, Clopper-Pearson)")
        if published.get(key) is not None:
            inside = "inside" if published[f"{key}_inside_interval"] else "OUTSIDE"
            on = (f", {published['n']} images" if published.get("n") not in (None, m["n"])
                  else "")
            line += (f"; published {float(published[key]):.2f} ({published.get('source')}{on}): "
                     f"difference {published[f'{key}_difference']:+.2f}, {inside} the interval")
        lines.append(line)
    diff = published.get("per_image_differences")
    if diff:
        lines.append(f"  image for image against the {published.get('source')}'s first "
                     f"{diff['n']}: clean {diff['clean']} differ, AutoAttack "
                     f"{diff['autoattack']} differ")
    if data.get("published_not_compared"):
        lines.append(f"  published figures not compared: {data['published_not_compared']}")
    return "\n".join(lines)


# ---- the sources ---------------------------------------------------------------------------

def _test_split(dataset: str, data_dir: str | None, **options: Any) -> tuple[Any, int]:
    from robustlab.data import load_dataset

    splits = load_dataset(dataset, data_dir, val_size=0, **options)
    return splits.test, splits.info.num_classes


def robustbench_source(name: str, *, dataset: str | None, threat_model: str | None,
                       file: str | None = None, download: bool = False) -> Source:
    """RobustBench's entry `name` (`models.robustbench`): its eps, norm and leaderboard
    figures; the checkpoint from `file`, the cache or (with `download`) RobustBench."""
    from robustlab.models.robustbench import find_entry, load_robustbench

    dataset = dataset or "cifar10"
    entry = find_entry(name, dataset=dataset, threat_model=threat_model or "Linf")

    def load(dev: Any, data_dir: str | None) -> tuple[Any, Any, int]:
        test, classes = _test_split(dataset, data_dir, download=download)
        model = load_robustbench(name, dataset=dataset, threat_model=entry.threat_model,
                                 path=file, download=download, device=dev)
        return model, test, classes

    return Source(kind="robustbench", name=name, dataset=dataset, eps=entry.eps,
                  norm=entry.norm, eps_text=entry.eps_text, budget_from="entry",
                  default_out=Path(f"benchmark-{name}.json"), load=load,
                  published={"clean_acc": entry.clean_acc,
                             "autoattack_acc": entry.autoattack_acc,
                             "source": "RobustBench leaderboard"},
                  info={"venue": entry.venue or None, "architecture": entry.label},
                  facts={"threat_model": entry.threat_model, "file": file, "url": entry.url,
                         "robustlab_architecture": entry.architecture})


def pretrained_source(name: str, *, zoo_dir: str | None = None) -> Source:
    """The zoo's model `name` (`robustlab.zoo`): its card's dataset, budget and figures."""
    from robustlab.zoo import load_pretrained, read_card

    card = read_card(name, zoo_dir)
    ev = card["evaluation"]

    def load(dev: Any, data_dir: str | None) -> tuple[Any, Any, int]:
        model = load_pretrained(name, device=str(dev), zoo_dir=zoo_dir)
        test, classes = _test_split(card["dataset"], data_dir, **card["dataset_options"])
        return model, test, classes

    return Source(kind="pretrained", name=name, dataset=card["dataset"],
                  eps=float(card["threat_model"]["eps"]), norm=card["threat_model"]["norm"],
                  eps_text=None, budget_from="model card", load=load,
                  default_out=Path(f"benchmark-{name}.json"),
                  published={"clean_acc": ev.get("clean_acc"),
                             "autoattack_acc": ev.get("autoattack_acc"), "n": ev.get("n"),
                             "source": "model card", "per_image": ev.get("per_image")},
                  info={"name": f"robustlab zoo: {name}",
                        "architecture": card["model"]["name"],
                        "additional_data": _extra_data(card["training"].get("config") or {})},
                  facts={"weights_file_sha256": card["weights"]["sha256"]})


def run_source(path: str, *, weights: str | None = None, data_dir: str | None = None
               ) -> Source:
    """A robustlab run folder: its training budget; its weights as `load_run` picks them. Its
    lock is held while it is measured (one writer of RUN/benchmark.json at a time, none while
    it trains)."""
    from robustlab.runs.load import load_run
    from robustlab.runs.saved import open_run

    folder, cfg = open_run(path, data_dir=data_dir)  # before any compute: config, weights

    def load(dev: Any, data_dir: str | None) -> tuple[Any, Any, int]:
        loaded = load_run(path, device=str(dev), data_dir=data_dir,
                          weights=weights or WEIGHTS_AVERAGED)
        facts["weights"] = loaded.weights
        return loaded.model, loaded.data.test, loaded.data.info.num_classes

    facts: dict[str, Any] = {"path": str(folder.path), "method": cfg.method, "seed": cfg.seed}
    return Source(kind="run", name=folder.path.name, dataset=cfg.dataset,
                  eps=cfg.eps if cfg.eps else None, norm=cfg.norm, eps_text=None,
                  budget_from="run's training", load=load, facts=facts,
                  guard=lambda: _run_lock(folder.path),
                  default_out=folder.file("benchmark.json"),
                  info={"name": f"robustlab run {folder.path.name}", "architecture": cfg.model,
                        "additional_data": _extra_data(cfg.to_dict())})


@contextlib.contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """The run folder's lock (`runs.folder.hold_lock`); none where nobody may write beside it
    (then no train can hold it either)."""
    from robustlab.runs.folder import hold_lock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hold_lock(path))
        except PermissionError:
            pass
        yield


def model_source(spec: str, *, dataset: str | None, weights: str | None) -> Source:
    """The user's model (`--model PATH.py:FACTORY --weights FILE`, as evaluate): --eps needed."""
    from robustlab.models.user import load_user_model

    if dataset is None:
        raise ConfigError("--dataset: required with --model (the test split, e.g. mnist, "
                          "cifar10; robustlab list datasets)")

    def load(dev: Any, data_dir: str | None) -> tuple[Any, Any, int]:
        model = load_user_model(spec, weights=weights, device=dev)
        test, classes = _test_split(dataset, data_dir)
        return model, test, classes

    stem = Path(spec.partition(":")[0]).stem
    return Source(kind="model", name=spec, dataset=dataset, eps=None, norm="linf",
                  eps_text=None, budget_from="--eps", load=load,
                  default_out=Path(f"benchmark-{stem}.json"), facts={"weights": weights})


def _extra_data(config: dict[str, Any]) -> bool | None:
    """Whether training used pseudo-labelled extra images (`extra_images`: RobustBench's
    `additional_data`); None when there is no config to say."""
    return config.get("extra_images") is not None if config else None
