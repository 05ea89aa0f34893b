"""Export a trained model for deployment or for other tools: TorchScript or ONNX.

`export_model(model_or_run, path, format=...)` traces the model in eval mode on an example
batch and, before returning, checks that the exported file gives the same logits as the
model (max |difference| <= `atol`) on random [0, 1] images: an export that changed the
numbers is an error, not a file. ONNX needs the `export` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from robustlab.common.checks import check_choice, check_int
from robustlab.common.errors import ConfigError
from robustlab.runs.folder import RunFolder

FORMATS = ("torchscript", "onnx")
ATOL = 1e-4  # float32 logits; ONNX Runtime's kernels round differently from PyTorch's


class ExportError(RuntimeError):
    """The export failed or the exported model does not give the model's logits."""


def export_model(model: nn.Module | str | Path, path: str | Path, *,
                 format: str = "torchscript", input_shape: tuple[int, ...] | None = None,
                 overwrite: bool = False, atol: float = ATOL) -> Path:
    """Write `model` (an `nn.Module` or a run folder) to `path` and return it.

    `input_shape`: one image's `(C, H, W)`; taken from the run's config.json for a run folder,
    required for a module. The batch dimension stays dynamic in ONNX.
    """
    check_choice("format", format, FORMATS, error=ConfigError)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if not isinstance(model, nn.Module):
        model, input_shape = _from_run(Path(model), input_shape)
    if input_shape is None:
        raise ConfigError("input_shape: one image's (C, H, W) is needed to trace a module")
    shape = tuple(check_int(f"input_shape[{i}]", v, low=1, error=ConfigError)
                  for i, v in enumerate(input_shape))
    model = model.eval().cpu()
    example = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        (_torchscript if format == "torchscript" else _onnx)(model, example, Path(tmp))
        _check_same_logits(model, Path(tmp), format, shape, atol)
        os.replace(tmp, path)  # a kill leaves the old file or none, never half of one
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _from_run(folder: Path, input_shape: tuple[int, ...] | None):
    from robustlab.runs.load import load_model

    model = load_model(folder, device="cpu")
    if input_shape is None:
        kwargs = RunFolder(folder).read_model_kwargs() or {}
        if "in_channels" in kwargs and "image_size" in kwargs:
            input_shape = (kwargs["in_channels"], *kwargs["image_size"])
    return model, input_shape


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path))


def _onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError("format onnx needs the onnx package: pip install "
                          "'robustlab[export]'") from None
    # The TorchScript-based exporter: the newer one needs onnxscript and more, for no gain on
    # these feed-forward classifiers; its deprecation notice is not the user's concern.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"},
                                                                 "logits": {0: "batch"}})


def _check_same_logits(model: nn.Module, path: Path, format: str, shape: tuple[int, ...],
                       atol: float) -> None:
    x = torch.rand((5, *shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        got = _run_exported(path, format, x)
    diff = float((got - expected).abs().max())
    if not diff <= atol:
        raise ExportError(f"the {format} export gives logits up to {diff:.3g} away from the "
                          f"model's (tolerance {atol:g}); not written")


def _run_exported(path: Path, format: str, x: torch.Tensor) -> torch.Tensor:
    if format == "torchscript":
        return torch.jit.load(str(path))(x)
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("checking an onnx export needs onnxruntime: pip install "
                          "'robustlab[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
