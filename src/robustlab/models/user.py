"""A model robustlab did not train: a factory in the user's Python file, or a TorchScript file.

`load_user_model("net.py:make_net", weights="net.safetensors")` imports `net.py`, calls
`make_net()` (it must return an `nn.Module` taking [0, 1] images `[N, C, H, W]` and returning
logits `[N, K]`) and loads the weights. Weights are read without running pickled code:
safetensors, or a PyTorch state dict through `torch.load(weights_only=True)`. A path ending in
`.pt` / `.pth` / `.ts` with no `:FACTORY` is a TorchScript archive (`torch.jit.load`).
`normalize=(mean, std)` wraps the model as `Normalize -> model` for models trained on
normalised inputs. Every problem raises `UserModelError` naming the file and what is expected.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from robustlab.models.normalize import Normalize

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")


class UserModelError(ValueError):
    """A user model that cannot be built or loaded; the message names the file and the fix."""


def load_user_model(spec: str, *, weights: str | None = None,
                    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                    device: str | torch.device = "cpu") -> nn.Module:
    """The model named by `spec` ("PATH.py:FACTORY" or a TorchScript file), in eval mode on
    `device`, with `weights` loaded (strictly: every key must match) and, if given,
    `normalize = (mean, std)` per channel applied first."""
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
        model = nn.Sequential(Normalize(*normalize), model)
    return model.to(device).eval()


def _from_factory(file: Path, factory_name: str, spec: str) -> nn.Module:
    module_name = f"robustlab_user_model_{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise UserModelError(f"--model {spec}: {file} is not an importable Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    loader_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items()
                       if not n.startswith("_") and callable(v))
        raise UserModelError(f"--model {spec}: {file} has no callable {factory_name!r}; "
                             f"callables there: {', '.join(names) or '(none)'}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise UserModelError(f"--model {spec}: {factory_name}() returned a "
                             f"{type(model).__name__}; expected a torch.nn.Module")
    return model


def _from_torchscript(file: Path, spec: str) -> nn.Module:
    try:
        return torch.jit.load(str(file), map_location="cpu")
    except RuntimeError as err:
        raise UserModelError(f"--model {spec}: {file} is not a TorchScript archive "
                             f"({str(err).splitlines()[0]}); for a state dict pass "
                             "--model PATH.py:FACTORY --weights FILE") from None


def load_weights(model: nn.Module, weights: str) -> None:
    """Load a state dict from `weights` (safetensors, or a torch file read with
    `weights_only=True`, so no pickled code runs) into `model`, strictly."""
    file = Path(weights)
    if not file.is_file():
        raise UserModelError(f"--weights {weights}: file not found")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        try:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            raise UserModelError(f"--weights {weights}: not a state dict loadable with "
                                 f"weights_only=True ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]}); save it with "
                                 "torch.save(model.state_dict(), ...) or as safetensors") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserModelError(f"--weights {weights}: expected a state dict (parameter name -> "
                             f"tensor), got a {type(state).__name__}")
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise UserModelError(f"--weights {weights}: keys do not match the model: missing "
                             f"{missing[:5] or 'none'}, unexpected {unexpected[:5] or 'none'}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise UserModelError(f"--weights {weights}: {str(err).splitlines()[-1].strip()}") from None


def _key_mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)
