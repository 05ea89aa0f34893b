"""A finished run read back without its data: the validated config, the recorded model
arguments, the weights' digest check, and a registered model rebuilt from them.

`runs.load` (`load_run`, `load_model`) opens runs with these; `runs.build` uses
`defense_arguments` to hand a defense the trained model of a run folder its options name (the
autoencoder defense's `autoencoder_run`, declared in the defense's `RUN_MODELS`), so no
defense opens a run folder itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.defenses import DefenseError, RunModel
from robustlab.models import create_model
from robustlab.registry import DEFENSES
from robustlab.runs.checkpoint import DIGEST_KEY, WeightsError, load_weights
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import CONFIG, WEIGHTS, RunFolder, RunFolderError


def open_run(path: str | Path, *, data_dir: str | None = None) -> tuple[RunFolder, TrainConfig]:
    """The run folder at `path` and its validated config; a `RunFolderError` if the folder,
    a valid config.json or the final weights are missing."""
    folder = RunFolder(Path(path))
    if not folder.path.is_dir():
        raise RunFolderError(f"run folder {folder.path} does not exist")
    cfg = read_run_config(folder, data_dir=data_dir)
    if not folder.file(WEIGHTS).is_file():
        raise RunFolderError(f"run {folder.path} has no {WEIGHTS}: it has not finished an epoch")
    return folder, cfg


def read_run_config(folder: RunFolder, *, data_dir: str | None = None) -> TrainConfig:
    """The run's `TrainConfig` from its config.json, validated as `robustlab train` validates
    it (with `data_dir` replaced when given). The recorded `device` and `threads` are not
    checked: a run trained on a GPU or a bigger machine may be evaluated on a smaller one. Any
    problem is a `RunFolderError` naming config.json and the field."""
    path = folder.file(CONFIG)
    try:
        raw = folder.read_config()
    except (KeyError, TypeError):  # a config.json without a `train` object
        raw = None
    if not isinstance(raw, dict):
        raise RunFolderError(f"{path}: expected a JSON object with a 'train' object (as "
                             "robustlab train writes it), found something else")
    try:
        cfg = TrainConfig.from_dict(raw, source=str(path))
        if data_dir is not None:
            cfg = cfg.replace(data_dir=data_dir)
        cfg.replace(device="auto", threads=None).validate()  # this machine's, not the run's
    except (ConfigError, TypeError) as err:
        detail = str(err).removeprefix(f"{path}: ")
        raise RunFolderError(f"{path}: invalid recorded config: {detail}") from None
    return cfg


def recorded_model_kwargs(folder: RunFolder) -> dict[str, Any] | None:
    """config.json's `model_kwargs` (JSON lists as tuples); None for runs written before."""
    kwargs = folder.read_model_kwargs()
    if kwargs is None:
        return None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def check_summary_digest(folder: RunFolder, metadata: dict, *, key: str = DIGEST_KEY,
                         name: str = WEIGHTS) -> None:
    """The weights must be the ones the run finished with (summary.json records their digest,
    under `key` for the file `name`: the averaged weights' under `averaged_weights_sha256`):
    weights copied in from another run, or an older epoch's, are refused."""
    if not folder.is_complete:
        return
    recorded = folder.read_summary().get(key)
    if recorded is not None and recorded != metadata.get(DIGEST_KEY):
        raise WeightsError(f"weights file {folder.file(name)} does not match the digest in "
                           f"{folder.file('summary.json')}: these are not the weights this run "
                           "finished with")


def load_run_model(path: str | Path, spec: RunModel, field: str) -> nn.Module:
    """The trained model of run folder `path` as option `field` of a defense wants it
    (`spec`): a registered `spec.model` trained without a defense, rebuilt from config.json's
    `model_kwargs`, its weights checked against summary.json's digest; on the CPU, in eval
    mode, no data read. Any problem is a `DefenseError` naming `field`."""
    try:
        folder, cfg = open_run(path)
        if cfg.model != spec.model or cfg.defense is not None:
            got = cfg.model if cfg.defense is None else f"{cfg.model} behind {cfg.defense}"
            raise DefenseError(f"{field}: {folder.path} trained model {got!r}, expected "
                               f"{spec.model!r}" + (f" ({spec.hint})" if spec.hint else ""))
        kwargs = recorded_model_kwargs(folder)
        if kwargs is None:
            raise DefenseError(f"{field}: {folder.file(CONFIG)} records no model_kwargs (a run "
                               "written before they were); train it again")
        model = create_model(cfg.model, **kwargs)
        check_summary_digest(folder, load_weights(folder.file(WEIGHTS), model))
    except (RunFolderError, WeightsError) as err:
        raise DefenseError(f"{field}: {err}") from None
    return model.eval()


def defense_arguments(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of defense `name` for the `options` of a config: the options, plus
    the trained model of each run folder an option names (the defense's `RUN_MODELS`) under
    the argument the defense takes it by. A config holds options only: a key that is one of
    the defense's module arguments is a `DefenseError`."""
    cls = DEFENSES.get(name)
    run_models: dict[str, RunModel] = getattr(cls, "RUN_MODELS", {})
    modules = sorted({"model"} | {spec.argument for spec in run_models.values()})
    taken = [k for k in modules if k in options]
    if taken:
        raise DefenseError(f"{', '.join(taken)}: not an option of defense {name!r} but a module "
                           f"given from Python; its options: {', '.join(cls.OPTIONS)}")
    arguments = dict(options)
    for option, spec in run_models.items():
        if options.get(option) is not None:
            path = cls.OPTIONS[option].check(option, options[option], error=DefenseError)
            arguments[spec.argument] = load_run_model(path, spec, option)
    return arguments
