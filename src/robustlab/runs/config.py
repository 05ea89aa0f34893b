"""`TrainConfig`: the one dataclass that describes a training run, validated before any compute."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.common.checks import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_seed,
    check_threads,
)
from robustlab.common.device import resolve_device
from robustlab.common.errors import ConfigError
from robustlab.common.renamed import upgrade_train_fields
from robustlab.common.vocabulary import (
    ATTACK_NORMS,
    AUGMENT_CHOICES,
    AVERAGING_EMA,
    AVERAGING_SWA,
    MEMORY_FORMATS,
    NORMS,
    SMOOTH_EPS_SCHEDULES,
    TRAIN_NORMS,
)
from robustlab.common.yaml_io import load_yaml
from robustlab.data.in_memory import CUSTOM

LR_SCHEDULES = ("constant", "cosine", "step", "piecewise", "onecycle")
OPTIMIZERS = ("sgd", "adam")
AMP_MODES = ("off", "bf16")
# Upper bounds of the counts, far above any real run but below what overflows or never ends:
# 100,000 epochs is years of CIFAR-10 adversarial training (a typo such as 2**70 would run
# forever); 2**20 (about a million) images per batch is more than every built-in training set
# holds (a batch larger than the set is the whole set) and 12 GiB of CIFAR-10 floats per step.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 2**20
# The share of each batch drawn from the pseudo-labelled extra images: RST's (Carmon et al.
# 2019, semisup-adv's --unsup_fraction) default.
EXTRA_FRACTION_DEFAULT = 0.5


def extra_per_batch(batch_size: int, fraction: float) -> int:
    """Extra images in a batch of `batch_size` at share `fraction`: floor(batch_size x
    fraction), as RST's sampler counts them (the labelled images are the rest); 1e-9 absorbs
    the float error of a product such as 100 x 0.29."""
    return math.floor(batch_size * fraction + 1e-9)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the paper's (SGD 0.9, lr 0.01, batch 128,
    no budget warm-up); `robustlab.training.recipes.configure` (and `robustlab train`, which
    calls it) fills in a working recipe for the dataset and budget instead, and records its name
    in `recipe`.

    Attributes with units: `eps` is the perturbation budget in pixel units of [0, 1] images
    (required for adversarial methods, there is deliberately no default that suits one dataset
    only), the radius of the `norm` ball (linf, l2, or l1 for the methods whose `norms` name
    it: pgd-at, the hybrid family, standard; eps 10 on MNIST); `val_size` counts images carved
    from the training set; `train_size` optionally subsamples the training set (for quick
    runs). `eps_warmup` is the budget warm-up of every
    adversarial method, in epochs (fractional allowed; 0 = none): eps_t rises per step from
    `eps_warmup_start * eps` to eps by `eps_warmup_schedule` (methods/eps_schedule.py).
    `noise_sigma` (pixel units, 0 = off) adds Gaussian noise N(0, noise_sigma^2 I) to every
    training batch before the method sees it, for any method: the noise randomized smoothing
    certifies with (`robustlab certify`, docs/certification.md).
    `data_fingerprint`: set by `robustlab.train` for data passed from Python ("custom"), the
    SHA-256 of its train/val/test tensors (`data.in_memory.fingerprint`); resume compares it,
    so an interrupted run never continues on other data.
    `extra_images` / `extra_teacher` / `extra_fraction`: pseudo-labelled extra images (RST,
    training/extra_data.py): a .safetensors (tensor "x") or .npy file of unlabeled images
    [N, C, H, W] (float in [0, 1] or uint8), labelled at the start of the run by the model of
    the finished run folder `extra_teacher`; each batch draws the share `extra_fraction` from
    them. `extra_images_sha256` / `extra_teacher_sha256` are recorded by the run (the file's
    SHA-256, the teacher's weights digest); resume compares them.
    `ema` / `swa_start`: weight averaging (training/averaging.py), at most one of them: an
    exponential moving average of the weights with this decay per optimizer step (0 = off), or
    the mean of the epoch-end weights of the epochs after the first `swa_start` (None = off);
    the run saves the averaged weights beside the last ones (docs/training.md).
    `awp` / `awp_warmup`: adversarial weight perturbation (training/methods/awp.py): each
    step's weights are pushed by gamma = `awp` x each layer's norm along the method's own loss
    gradient before the update, from epoch `awp_warmup` on (0 = off). `label_smoothing` (0 =
    off) smooths the targets of the training objective's cross-entropy terms (docs/training.md).
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
    noise_sigma: float = 0.0
    awp: float = 0.0
    awp_warmup: float = 0.0
    label_smoothing: float = 0.0
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
    ema: float = 0.0
    swa_start: float | None = None
    seed: int = 0
    val_size: int | None = None
    train_size: int | None = None
    data_fingerprint: str | None = None
    extra_images: str | None = None
    extra_teacher: str | None = None
    extra_fraction: float = EXTRA_FRACTION_DEFAULT
    extra_images_sha256: str | None = None
    extra_teacher_sha256: str | None = None
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

    def check_types(self) -> TrainConfig:
        """The fields' types (strings, flags, option tables) and eps as a pixel-scale number:
        what a recipe reads before the whole config is validated. Returns self."""
        _check_types(self)
        _check_eps(self)
        return self

    def validate(self) -> TrainConfig:
        """Check every field; raise `ConfigError` naming the first bad one. Returns self.

        Types come first (`_check_types`), so every later check can rely on them.
        """
        from robustlab.plugins import load_plugins
        from robustlab.registry import DATASETS, DEFENSES, METHODS, MODELS

        load_plugins()
        _check_types(self)
        for fname, registry in (("dataset", DATASETS), ("model", MODELS), ("method", METHODS)):
            value = getattr(self, fname)
            if value == CUSTOM and fname != "method":
                continue  # a model / data passed from Python (`robustlab.train`); checked there
            if value not in registry:
                raise ConfigError(f"{fname}: unknown {registry.kind} {value!r}; "
                                  f"available: {', '.join(registry.list())}")
        if self.defense is not None and self.defense not in DEFENSES:
            raise ConfigError(f"defense: unknown defense {self.defense!r}; "
                              f"available: {', '.join(DEFENSES.list()) or '(none)'}")
        if self.defense is None and self.defense_options:
            raise ConfigError(f"defense_options: {_short(self.defense_options)} given without "
                              "a defense (--defense-opt needs --defense NAME); expected no "
                              "options, or a defense to take them")
        self._validate_numbers()
        self._validate_averaging()
        self._validate_fingerprint()
        self._validate_extra()
        self._validate_noise()
        self._validate_warmup(method_is_adversarial=bool(
            getattr(METHODS.get(self.method), "needs_eps", False)))
        self._validate_awp(METHODS.get(self.method))
        self._validate_label_smoothing(METHODS.get(self.method))
        for fname, allowed in (("lr_schedule", LR_SCHEDULES), ("optimizer", OPTIMIZERS),
                               ("norm", NORMS), ("augment", AUGMENT_CHOICES),
                               ("memory_format", MEMORY_FORMATS), ("amp", AMP_MODES)):
            check_choice(fname, getattr(self, fname), allowed, error=ConfigError)
        self._validate_norm(METHODS)
        _check_device(self.device)
        method_cls = METHODS.get(self.method)
        if getattr(method_cls, "needs_eps", False) and self.eps is None:
            raise ConfigError(f"eps: method {self.method!r} is adversarial and needs a budget "
                              "(e.g. --eps 0.3 for MNIST, 0.1 Fashion-MNIST, 0.031 CIFAR-10)")
        if getattr(method_cls, "needs_val", False) and self.val_size == 0:
            raise ConfigError(f"val_size: method {self.method!r} measures validation accuracy "
                              "every epoch and needs a validation split; got 0")
        return self

    def _validate_norm(self, methods: Any) -> None:
        """The method trains at `norm` (its class attribute `norms`) with its options (its
        `norm_refusal`, e.g. a generator without an L1 version); `methods`: the registry."""
        def trains_at(name: str) -> tuple[str, ...]:
            return tuple(getattr(methods.get(name), "norms", ATTACK_NORMS))

        norms = trains_at(self.method)
        if self.norm not in norms:
            able = [m for m in methods.list() if self.norm in trains_at(m)]
            if not able:  # l0: no training method attacks at it
                raise ConfigError(f"norm: {self.norm} is an evaluation threat model only (no "
                                  f"training method attacks at it); training norms: "
                                  f"{', '.join(TRAIN_NORMS)} (evaluate at {self.norm} with "
                                  f"robustlab evaluate --norm {self.norm})")
            raise ConfigError(f"norm: method {self.method!r} does not train at {self.norm} (it "
                              f"trains at {', '.join(norms)}); methods that train at "
                              f"{self.norm}: {', '.join(able)}")
        refusal = getattr(methods.get(self.method), "norm_refusal", None)
        why = refusal(self.norm, self.method_options) if refusal is not None else None
        if why:
            raise ConfigError(why)

    def _validate_numbers(self) -> None:
        """Counts, seed, threads, rates and the budget: types and ranges."""
        _check_int(self, "epochs", 1, MAX_EPOCHS)
        _check_int(self, "batch_size", 1, MAX_BATCH_SIZE)
        _check_int(self, "seed", 0)
        check_seed("seed", self.seed, error=ConfigError)  # torch.manual_seed's range
        if self.val_size is not None:
            _check_int(self, "val_size", 0)
        if self.train_size is not None:
            _check_int(self, "train_size", 1)
        if self.threads is not None:
            _check_int(self, "threads", 1)
            check_threads("threads", self.threads, error=ConfigError)  # this machine's cores
        _check_number(self, "lr", low=0.0, low_open=True)
        # SGD's momentum: the velocity's decay per step; at 1 or more it never decays and grows
        check_number("momentum", self.momentum, 0.0, 1.0, high_open=True, error=ConfigError)
        _check_number(self, "weight_decay", low=0.0)
        _check_eps(self)

    def _validate_averaging(self) -> None:
        """`ema` (a decay per step in [0, 1), 0 = off) and `swa_start` (epochs, < epochs; None
        = off): one way of averaging the weights per run (training/averaging.py)."""
        ema = _check_number(self, "ema", "a decay per step in [0, 1) (0 = off; typical "
                                         "0.995-0.9999)", low=0.0, high=1.0, high_open=True)
        if self.swa_start is None:
            return
        check_number("swa_start", self.swa_start, 0.0, self.epochs, high_open=True,
                     expected=f"a number of epochs in [0, {self.epochs}) (epochs = "
                              f"{self.epochs}), or null for no SWA", error=ConfigError)
        if ema > 0:
            raise ConfigError(f"swa_start: one weight averaging per run, but ema is {ema:g} "
                              f"and swa_start {self.swa_start:g}; expected ema 0 or swa_start "
                              "null")

    @property
    def averaging(self) -> str | None:
        """How the run averages its weights: "ema", "swa", or None (the last iterate only)."""
        if self.swa_start is not None:
            return AVERAGING_SWA
        return AVERAGING_EMA if self.ema else None

    def _validate_fingerprint(self) -> None:
        if self.data_fingerprint is not None and self.dataset != CUSTOM:
            raise ConfigError(f"data_fingerprint: recorded only for data passed from Python "
                              f"(dataset 'custom'); dataset {self.dataset!r} is checked by its "
                              f"files, expected null, got {_short(self.data_fingerprint)}")

    def _validate_extra(self) -> None:
        """The pseudo-labelled extra images' settings (training/extra_data.py): ranges and how
        they go together. The files themselves are read when the run starts, not here (a
        finished run loads without them)."""
        f = check_number("extra_fraction", self.extra_fraction, 0.0, 1.0, low_open=True,
                         high_open=True, error=ConfigError,
                         expected="the share of each batch drawn from the extra images, in "
                                  "(0, 1) (default 0.5, as in RST)")
        if self.extra_images is None:
            given = [name for name in ("extra_teacher", "extra_images_sha256",
                                       "extra_teacher_sha256") if getattr(self, name) is not None]
            given += ["extra_fraction"] if f != EXTRA_FRACTION_DEFAULT else []
            if given:
                raise ConfigError(f"{given[0]}: {_short(getattr(self, given[0]))} given without "
                                  "extra_images (--extra-images FILE); expected no extra-data "
                                  "settings, or a file of extra images for them")
            return
        if self.extra_teacher is None:
            raise ConfigError(f"extra_teacher: extra_images {self.extra_images!r} need a teacher "
                              "to label them; expected the folder of a finished robustlab run "
                              "(--extra-teacher RUN), got none")
        n = extra_per_batch(self.batch_size, f)
        if n < 1 or n >= self.batch_size:
            raise ConfigError(f"extra_fraction: {f:g} of batch_size {self.batch_size} is {n} "
                              f"extra and {self.batch_size - n} labelled images per batch; "
                              "expected at least one of each (a larger batch_size, or a "
                              "fraction nearer 0.5)")

    def _validate_noise(self) -> None:
        sigma = _check_number(self, "noise_sigma", "a noise std >= 0 in pixel units", low=0.0)
        if sigma > 0 and self.method == "gaussian-aug":
            raise ConfigError(f"noise_sigma: method 'gaussian-aug' adds its own noise (its "
                              f"option sigma); got noise_sigma {sigma:g} too, expected 0 -- "
                              "use one of them")

    def _validate_awp(self, method_cls: Any) -> None:
        """Adversarial weight perturbation (training/methods/awp.py): gamma and its warm-up."""
        # gamma is the perturbation's size relative to each layer's weight norm: the paper uses
        # 5e-3 (TRADES) and 1e-2 (PGD-AT); at 1 the perturbation is as large as the weights
        # themselves, so anything above it is a typo, never a setting.
        gamma = _check_number(self, "awp", "a relative size gamma in [0, 1] (0 = off; the "
                              "paper's 0.005 for trades, 0.01 for pgd-at)", low=0.0, high=1.0)
        if gamma > 0 and not getattr(method_cls, "supports_awp", False):
            raise ConfigError(f"awp: method {self.method!r} has no adversarial-weight-"
                              f"perturbation step; got {gamma:g}, expected 0 (AWP works with "
                              "pgd-at, fgsm-rs, n-fgsm, trades, mart and the hybrid family)")
        w = _check_number(self, "awp_warmup", "a number of epochs >= 0", low=0.0)
        if w > self.epochs:
            raise ConfigError(f"awp_warmup: {w:g} epochs is longer than the run "
                              f"(epochs = {self.epochs}); expected at most {self.epochs}")
        if w > 0 and gamma == 0:
            raise ConfigError(f"awp_warmup: {w:g} epochs given without awp (AWP is off); "
                              "expected 0, or an awp gamma > 0 (--awp 0.01)")

    def _validate_label_smoothing(self, method_cls: Any) -> None:
        s = _check_number(self, "label_smoothing", "a number in [0, 1) (0 = off)", low=0.0,
                          high=1.0, high_open=True)
        if s > 0 and not getattr(method_cls, "reports_accuracy", True):
            raise ConfigError(f"label_smoothing: method {self.method!r} does not train a "
                              f"classifier, so it has no labels to smooth; got {s:g}, "
                              "expected 0")

    def _validate_warmup(self, *, method_is_adversarial: bool) -> None:
        w = _check_number(self, "eps_warmup", "a number of epochs >= 0", low=0.0)
        if w > self.epochs:
            raise ConfigError(f"eps_warmup: {w:g} epochs is longer than the run "
                              f"(epochs = {self.epochs}); expected at most {self.epochs}")
        if w > 0 and not method_is_adversarial:
            raise ConfigError(f"eps_warmup: method {self.method!r} trains without a budget, so "
                              f"it has nothing to warm up; got {w:g}, expected 0")
        _check_number(self, "eps_warmup_start", "a fraction of eps in [0, 1]", low=0.0, high=1.0)
        check_choice("eps_warmup_schedule", self.eps_warmup_schedule, SMOOTH_EPS_SCHEDULES,
                     error=ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """The config of the fields `data` (from a file, a run folder, a preset); renamed
        option names written before a rename (`method_options.k`) are read under their new
        name, with a warning naming `source` (`common/renamed.py`)."""
        data = upgrade_train_fields(data, source=source)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; "
                              f"known fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML config file (UTF-8) into a dict of fields.

    The fields sit at the top level or, all of them, in a `[train]` table (`train:` in YAML).
    Every problem is a `ConfigError` naming the file: missing, unreadable, not UTF-8, not
    parseable, not a table, `train` not a table, keys beside `train`, non-string keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config: {path} must end in .toml, .yaml or .yml")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config: {path} is not UTF-8 text: byte 0x{err.object[err.start]:02x} "
                          f"at offset {err.start}; expected a UTF-8 encoded file") from None
    return _train_table(path, _parse_config(path, text))


def _parse_config(path: Path, text: str) -> Any:
    import yaml

    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        data = load_yaml(text)
        return {} if data is None else data  # an empty YAML file is an empty table
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError, RecursionError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"config: cannot parse {path}: {detail}") from None


def _train_table(path: Path, data: Any) -> dict[str, Any]:
    """The fields of a parsed config file: `data` itself or its `train` table, checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a table of fields, got "
                          f"{type(data).__name__} {_short(data)}")
    if "train" in data:
        table = data["train"]
        if not isinstance(table, dict):
            raise ConfigError(f"config: {path}: train: expected a table of fields, got "
                              f"{type(table).__name__} {_short(table)}")
        others = sorted(map(str, set(data) - {"train"}))
        if others:
            raise ConfigError(f"config: {path}: key(s) {', '.join(others)} beside the train "
                              "table would be ignored; expected every field inside train "
                              "(or no train table at all)")
        data = table
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config: {path}: field names must be strings, got {bad[0]!r}")
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(cfg: TrainConfig, fname: str, low: int, high: int | None = None) -> None:
    check_int(fname, getattr(cfg, fname), low, high, error=ConfigError)


# Field types checked first by `validate` (numbers and integers by `_check_number` /
# `_check_int`, with their ranges).
_STR_FIELDS = ("dataset", "model", "method", "norm", "eps_warmup_schedule", "optimizer",
               "lr_schedule", "augment", "device", "memory_format", "amp")
_OPTIONAL_STR_FIELDS = ("recipe", "defense", "data_dir", "out_dir", "data_fingerprint",
                        "extra_images", "extra_teacher", "extra_images_sha256",
                        "extra_teacher_sha256")
_BOOL_FIELDS = ("download", "compile", "progress")
_DICT_FIELDS = ("dataset_options", "method_options", "defense_options")


def _check_types(cfg: TrainConfig) -> None:
    """Strings, optional strings, booleans and option dicts (string keys) are what they say."""
    for fname in _STR_FIELDS + _OPTIONAL_STR_FIELDS:
        value = getattr(cfg, fname)
        if not isinstance(value, str) and not (value is None and fname in _OPTIONAL_STR_FIELDS):
            none = " or null" if fname in _OPTIONAL_STR_FIELDS else ""
            raise ConfigError(f"{fname}: expected a string{none}, got "
                              f"{type(value).__name__} {_short(value)}")
    for fname in _BOOL_FIELDS:
        value = getattr(cfg, fname)
        check_bool(fname, value, error=ConfigError)
    for fname in _DICT_FIELDS:
        value = getattr(cfg, fname)
        if not isinstance(value, dict):
            raise ConfigError(f"{fname}: expected a table of option=value, got "
                              f"{type(value).__name__} {_short(value)}")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{fname}: expected string option names, got {bad[0]!r} in "
                              f"{_short(value)}")


def _check_eps(cfg: TrainConfig) -> None:
    """eps (if set) as a budget of the config's norm: in [0, 1] (pixel scale) for linf; at
    l2 / l1 any number >= 0 in pixel units of the ball (e.g. 2 / 10 on MNIST), its upper
    bound (sqrt(C*H*W) / C*H*W) checked against the images when the run loads them
    (`check_l2_budget` / `check_l1_budget`)."""
    if cfg.eps is None:
        return
    if cfg.norm in ("l1", "l2"):
        example = "10" if cfg.norm == "l1" else "2"
        _check_number(cfg, "eps", f"an {cfg.norm.upper()} budget >= 0 in pixel units of the "
                      f"{cfg.norm.upper()} ball (e.g. {example} on MNIST)", low=0.0)
        return
    _check_number(cfg, "eps", "a number in [0, 1] (pixel scale)", low=0.0, high=1.0)


def _check_number(cfg: TrainConfig, fname: str, expected: str | None = None, *, low: float,
                  high: float | None = None, low_open: bool = False,
                  high_open: bool = False) -> float:
    """The field as a finite real number in [low, high] (not a bool, nan or inf); else a
    `ConfigError` saying `expected` (default: the bounds)."""
    return check_number(fname, getattr(cfg, fname), low, high, low_open=low_open,
                        high_open=high_open, expected=expected, error=ConfigError)


def _check_device(name: str) -> None:
    """'auto', or a device this machine has (`cuda[:N]` needs CUDA and N < device count)."""
    if name == "auto":
        return
    try:
        resolve_device(name)
    except (ValueError, RuntimeError, TypeError) as err:
        detail = str(err).removeprefix("device: ")
        raise ConfigError(f"device: {detail}") from None
