"""A model robustlab did not train: a factory in the user's Python file, or a TorchScript file.

`load_user_model("net.py:make_net", weights="net.safetensors")` imports `net.py`, calls
`make_net()` (it must return an `nn.Module` taking [0, 1] images `[N, C, H, W]` and returning
logits `[N, K]`) and loads the weights. Weights are read without running pickled code:
safetensors, or a PyTorch state dict through `torch.load(weights_only=True)`. A path ending in
`.pt` / `.pth` / `.ts` with no `:FACTORY` is a TorchScript archive (`torch.jit.load`).
`normalize=(mean, std)` wraps the model as `Normalize -> model` for models trained on
normalised inputs. Every problem raises `UserModelError` naming the file and what is expected:
a file that does not parse or whose code raises, a factory that needs arguments or fails,
weights that are missing, damaged, or whose keys or shapes do not match. The file is imported
with its own folder and the working directory on `sys.path`, so it may import its siblings
(`robustlab.common.user_code`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from robustlab.common.device import resolve_device
from robustlab.common.errors import ConfigError
from robustlab.common.user_code import describe_failure, import_file, user_import_path
from robustlab.models.normalize import Normalize

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")


class UserModelError(ConfigError):
    """A user model that cannot be built, loaded or used (its output checked on one batch by
    `robustlab.models.probe`); the message names the file or the output and the fix. A
    `ConfigError` (so a `ValueError`): the command line prints it as one line, exit status 2."""


def load_user_model(spec: str, *, weights: str | None = None,
                    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                    device: str | torch.device = "cpu") -> nn.Module:
    """The model named by `spec` ("PATH.py:FACTORY" or a TorchScript file), in eval mode on
    `device` ("cpu", "cuda[:N]" or "auto"; another name raises `DeviceError` first), with
    `weights` loaded (strictly: every key must match) and, if given, `normalize = (mean,
    std)` per channel applied first."""
    device = resolve_device(str(device))  # a bad name: one DeviceError line, before any import
    path, _, factory_name = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise UserModelError(f"--model {spec}: file {file} not found; expected PATH.py:FACTORY "
                             "or a TorchScript file")
    if factory_name:
        model = _from_factory(file, factory_name, spec)
    elif file.suffix in TORCHSCRIPT_SUFFIXES:
        model = _from_torchscript(file, spec)
    else:
        suffixes = ", ".join(TORCHSCRIPT_SUFFIXES)
        raise UserModelError(f"--model {spec}: expected PATH.py:FACTORY (a function returning "
                             f"an nn.Module) or a TorchScript file ({suffixes})")
    if weights is not None:
        load_weights(model, weights)
    if normalize is not None:
        try:
            model = nn.Sequential(Normalize(*normalize), model)
        except ValueError as err:
            raise UserModelError(f"--normalize: {err}") from None
    return model.to(device).eval()


def _from_factory(file: Path, factory_name: str, spec: str) -> nn.Module:
    module = _import_model_file(file, spec)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items()
                       if not n.startswith("_") and callable(v))
        raise UserModelError(f"--model {spec}: {file} has no callable {factory_name!r}; "
                             f"callables there: {', '.join(names) or '(none)'}")
    _check_no_arguments(factory, factory_name, spec)
    try:
        with user_import_path(file.parent):  # a factory may import its siblings lazily
            model = factory()
    except Exception as err:
        raise UserModelError(f"--model {spec}: {factory_name}() failed: "
                             f"{describe_failure(err, file)}") from err
    if not isinstance(model, nn.Module):
        raise UserModelError(f"--model {spec}: {factory_name}() returned a "
                             f"{type(model).__name__}; expected a torch.nn.Module")
    return model


def _import_model_file(file: Path, spec: str) -> ModuleType:
    """`file` imported under a name of its own, its folder and the working directory on
    `sys.path` meanwhile (so it may import its siblings); any failure is one line."""
    module_name = f"robustlab_user_model_{abs(hash(str(file.resolve())))}"
    try:
        return import_file(file, module_name)
    except Exception as err:  # SyntaxError, a missing import, an error in its top-level code
        raise UserModelError(f"--model {spec}: cannot import {file}: "
                             f"{describe_failure(err, file)}") from err


def _check_no_arguments(factory: Any, factory_name: str, spec: str) -> None:
    """`UserModelError` naming the parameters if `factory()` cannot be called bare."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: just call it
        return
    needed = [p.name for p in params if p.default is p.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if needed:
        raise UserModelError(f"--model {spec}: {factory_name}() needs the argument(s) "
                             f"{', '.join(needed)}; expected a function callable with no "
                             f"arguments (e.g. def make(): return {factory_name}(...))")


def _from_torchscript(file: Path, spec: str) -> nn.Module:
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except Exception as err:  # RuntimeError, ValueError, ... on a file that is not an archive
        raise UserModelError(f"--model {spec}: {file} is not a TorchScript archive "
                             f"({_first_line(err)}); for a state dict pass "
                             "--model PATH.py:FACTORY --weights FILE") from None


def load_weights(model: nn.Module, weights: str) -> None:
    """Load a state dict from `weights` (safetensors, or a torch file read with
    `weights_only=True`, so no pickled code runs) into `model`, strictly."""
    state = _read_state(weights)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserModelError(f"--weights {weights}: expected a state dict (parameter name -> "
                             f"tensor), got a {type(state).__name__}")
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise UserModelError(f"--weights {weights}: keys do not match the model: missing "
                             f"{missing[:5] or 'none'}, unexpected {unexpected[:5] or 'none'}")
    wrong = [f"{k} {list(state[k].shape)} (model {list(v.shape)})"
             for k, v in model.state_dict().items() if state[k].shape != v.shape]
    if wrong:
        raise UserModelError(f"--weights {weights}: shapes do not match the model: "
                             f"{', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # anything else load_state_dict refuses
        raise UserModelError(f"--weights {weights}: {str(err).splitlines()[-1].strip()}") from None


def _read_state(weights: str) -> Any:
    """The object stored in `weights` (a "state_dict" entry unwrapped); a file that cannot be
    read as safetensors or with `weights_only=True` is a `UserModelError`."""
    file = Path(weights)
    if not file.is_file():
        raise UserModelError(f"--weights {weights}: file not found")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as err:  # SafetensorError on a damaged / foreign file
            raise UserModelError(f"--weights {weights}: not a readable safetensors file "
                                 f"({_first_line(err)})") from None
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ... on any bytes
        raise UserModelError(f"--weights {weights}: not a state dict loadable with "
                             f"weights_only=True ({_first_line(err)}); save it with "
                             "torch.save(model.state_dict(), ...) or as safetensors") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def _key_mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)
