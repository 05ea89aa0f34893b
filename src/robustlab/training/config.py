"""`TrainConfig`: the one dataclass that describes a training run, validated before any compute."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LR_SCHEDULES = ("constant", "cosine", "step", "piecewise", "onecycle")
# Budget warm-up schedules: the smooth ones of methods/eps_schedule.py (they change every step).
EPS_WARMUP_SCHEDULES = ("linear", "cosine", "exponential")
OPTIMIZERS = ("sgd", "adam")
NORMS = ("linf", "l2")
AUGMENTS = ("auto", "none", "crop-flip")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
AMP_MODES = ("off", "bf16")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field, the value and what is
    allowed."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the paper's (SGD 0.9, lr 0.01, batch 128,
    no budget warm-up); `robustlab.training.recipes.configure` (and `robustlab train`, which
    calls it) fills in a working recipe for the dataset and budget instead, and records its name
    in `recipe`.

    Attributes with units: `eps` is the perturbation budget in pixel units of [0, 1] images
    (required for adversarial methods, there is deliberately no default that suits one dataset
    only); `val_size` counts images carved from the training set; `train_size` optionally
    subsamples the training set (for quick runs). `eps_warmup` is the budget warm-up of every
    adversarial method, in epochs (fractional allowed; 0 = none): eps_t rises per step from
    `eps_warmup_start * eps` to eps by `eps_warmup_schedule` (methods/eps_schedule.py).
    """

    dataset: str = "mnist"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str = "lenet5"
    method: str = "standard"
    method_options: dict[str, Any] = field(default_factory=dict)
    eps: float | None = None
    norm: str = "linf"
    eps_warmup: float = 0.0
    eps_warmup_start: float = 0.1
    eps_warmup_schedule: str = "linear"
    recipe: str | None = None
    defense: str | None = None
    defense_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "constant"
    seed: int = 0
    val_size: int | None = None
    train_size: int | None = None
    augment: str = "auto"
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    memory_format: str = "auto"
    amp: str = "off"
    compile: bool = False
    threads: int | None = None
    out_dir: str | None = None
    progress: bool = True

    def validate(self) -> TrainConfig:
        """Check every field; raise `ConfigError` naming the first bad one. Returns self."""
        from robustlab.registry import DATASETS, DEFENSES, METHODS, MODELS

        _ensure_registries_loaded()
        for fname, registry in (("dataset", DATASETS), ("model", MODELS), ("method", METHODS)):
            value = getattr(self, fname)
            if value not in registry:
                raise ConfigError(f"{fname}: unknown {registry.kind} {value!r}; "
                                  f"available: {', '.join(registry.list())}")
        if self.defense is not None and self.defense not in DEFENSES:
            raise ConfigError(f"defense: unknown defense {self.defense!r}; "
                              f"available: {', '.join(DEFENSES.list()) or '(none)'}")
        _check_int(self, "epochs", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "seed", 0)
        if self.val_size is not None:
            _check_int(self, "val_size", 0)
        if self.train_size is not None:
            _check_int(self, "train_size", 1)
        if self.threads is not None:
            _check_int(self, "threads", 1)
        for fname, low in (("lr", 0.0), ("momentum", 0.0), ("weight_decay", 0.0)):
            value = getattr(self, fname)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{fname}: expected a number >= {low}, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr: expected a number > 0, got {self.lr!r}")
        if self.eps is not None and (
            not isinstance(self.eps, (int, float)) or not 0.0 <= float(self.eps) <= 1.0
        ):
            raise ConfigError(f"eps: expected a number in [0, 1] (pixel scale), got {self.eps!r}")
        self._validate_warmup(method_is_adversarial=bool(
            getattr(METHODS.get(self.method), "needs_eps", False)))
        for fname, allowed in (("lr_schedule", LR_SCHEDULES), ("optimizer", OPTIMIZERS),
                               ("norm", NORMS), ("augment", AUGMENTS),
                               ("memory_format", MEMORY_FORMATS), ("amp", AMP_MODES)):
            if getattr(self, fname) not in allowed:
                raise ConfigError(f"{fname}: expected one of {', '.join(allowed)}, "
                                  f"got {getattr(self, fname)!r}")
        if self.device != "auto":
            import torch

            try:
                torch.device(self.device)
            except RuntimeError:
                raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', "
                                  f"got {self.device!r}") from None
        method_cls = METHODS.get(self.method)
        if getattr(method_cls, "needs_eps", False) and self.eps is None:
            raise ConfigError(f"eps: method {self.method!r} is adversarial and needs a budget "
                              "(e.g. --eps 0.3 for MNIST, 0.1 Fashion-MNIST, 0.031 CIFAR-10)")
        if getattr(method_cls, "needs_val", False) and self.val_size == 0:
            raise ConfigError(f"val_size: method {self.method!r} measures validation accuracy "
                              "every epoch and needs a validation split; got 0")
        return self

    def _validate_warmup(self, *, method_is_adversarial: bool) -> None:
        w = self.eps_warmup
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ConfigError(f"eps_warmup: expected a number of epochs >= 0, got {w!r}")
        if w > self.epochs:
            raise ConfigError(f"eps_warmup: {w:g} epochs is longer than the run "
                              f"(epochs = {self.epochs}); expected at most {self.epochs}")
        if w > 0 and not method_is_adversarial:
            raise ConfigError(f"eps_warmup: method {self.method!r} trains without a budget, so "
                              f"it has nothing to warm up; got {w:g}, expected 0")
        s = self.eps_warmup_start
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
            raise ConfigError(f"eps_warmup_start: expected a fraction of eps in [0, 1], "
                              f"got {s!r}")
        if self.eps_warmup_schedule not in EPS_WARMUP_SCHEDULES:
            raise ConfigError(f"eps_warmup_schedule: expected one of "
                              f"{', '.join(EPS_WARMUP_SCHEDULES)}, got "
                              f"{self.eps_warmup_schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; "
                              f"known fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a dict (a `[train]` table is accepted too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config: {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"config: cannot parse {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a table of fields, got {type(data).__name__}")
    return data.get("train", data)


def _check_int(cfg: TrainConfig, fname: str, low: int) -> None:
    value = getattr(cfg, fname)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{fname}: expected an integer >= {low}, got {value!r}")


def _ensure_registries_loaded() -> None:
    import robustlab.data  # noqa: F401
    import robustlab.defenses  # noqa: F401
    import robustlab.models  # noqa: F401
    import robustlab.training.methods  # noqa: F401
