"""Export a trained model for deployment or for other tools: TorchScript or ONNX.

`export_model(model_or_run, path, format=...)` traces the model in eval mode on an example
batch and, before returning, checks that the exported file gives the same logits as the
model (max |difference| <= `atol`) on random [0, 1] images: an export that changed the
numbers is an error, not a file. ONNX needs the `export` extra (onnx, onnxruntime).

The file is written to `.NAME.PID.XXXXXXXX.part` beside `path` and renamed onto it once
checked (mode 0644 less the umask, as any file robustlab writes); the part files of an export
that was killed (its PID gone) are deleted by the next export into the same folder. A run
that is not complete (no summary.json) is exported with a warning, as `evaluate` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from robustlab.common.checks import check_choice, check_int
from robustlab.common.errors import ConfigError
from robustlab.common.files import replace_refusal
from robustlab.common.vocabulary import RUN_WEIGHTS, WEIGHTS_AVERAGED
from robustlab.runs.folder import AVERAGED_WEIGHTS, RunFolder

FORMATS = ("torchscript", "onnx")
ATOL = 1e-4  # float32 logits; ONNX Runtime's kernels round differently from PyTorch's
# An export's temporary file: `.NAME.PID.XXXXXXXX.part` (tempfile.mkstemp's 8 characters).
_PART = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.part$")


class ExportError(RuntimeError):
    """The export failed or the exported model does not give the model's logits."""


def export_model(model: nn.Module | str | Path, path: str | Path, *,
                 format: str = "torchscript", input_shape: tuple[int, ...] | None = None,
                 overwrite: bool = False, atol: float = ATOL,
                 weights: str = WEIGHTS_AVERAGED) -> Path:
    """Write `model` (an `nn.Module` or a run folder) to `path` and return it.

    `input_shape`: one image's `(C, H, W)`; taken from the run's config.json for a run folder,
    required for a module. The batch dimension stays dynamic in ONNX. `weights`: a run
    folder's "averaged" weights (the default; the last ones for a run that did not average)
    or "last", as `load_run`; the averaged ones are said on stderr.
    """
    check_choice("format", format, FORMATS, error=ConfigError)
    check_choice("weights", weights, RUN_WEIGHTS, error=ConfigError)
    path = Path(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    refusal = replace_refusal(path, is_exported_model)
    if refusal:
        raise FileExistsError(refusal)
    if not isinstance(model, nn.Module):
        model, input_shape = _from_run(Path(model), input_shape, weights)
    if input_shape is None:
        raise ConfigError("input_shape: one image's (C, H, W) is needed to trace a module")
    shape = tuple(check_int(f"input_shape[{i}]", v, low=1, error=ConfigError)
                  for i, v in enumerate(input_shape))
    model = model.eval().cpu()
    example = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".part")
    os.close(fd)
    try:
        (_torchscript if format == "torchscript" else _onnx)(model, example, Path(tmp))
        _check_same_logits(model, Path(tmp), format, shape, atol)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the usual mode of a file
        os.replace(tmp, path)  # a kill leaves the old file or none, never half of one
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def is_exported_model(path: Path) -> bool:
    """Whether `path` holds a model an export writes: a TorchScript archive (a zip with a
    `constants.pkl` and `code/`) or an ONNX model whose producer is PyTorch. `--overwrite`
    replaces nothing else."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        return any(n.endswith("/constants.pkl") for n in names) and any(
            "/code/" in n for n in names)
    try:
        import onnx
    except ImportError:
        return False
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse failure means "not an ONNX model"
        return False
    return proto.producer_name == "pytorch"


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete the part files (`_PART`) in `folder` of exports whose process has ended (killed
    before their rename); a part file of a running export is kept. Returns those deleted."""
    stale = []
    for entry in sorted(folder.iterdir()):
        match = _PART.match(entry.name)
        if match and not entry.is_symlink() and entry.is_file() \
                and not _running(int(match["pid"])):
            entry.unlink(missing_ok=True)
            stale.append(entry)
    return stale


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # gone; or no pid at all
        return False
    except PermissionError:  # it exists, as another user's process
        pass
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _from_run(folder: Path, input_shape: tuple[int, ...] | None, weights: str):
    from robustlab.runs.load import load_model

    run = RunFolder(folder)
    if weights == WEIGHTS_AVERAGED and run.file(AVERAGED_WEIGHTS).is_file():
        print(f"exporting the averaged weights of run {folder} ({AVERAGED_WEIGHTS}; "
              "--run-weights last for the last iterate)", file=sys.stderr)
    if run.path.is_dir() and not run.is_complete:
        print(f"warning: run {folder} is not complete (no summary.json): exporting the weights "
              f"of its last finished epoch ({len(run.read_metrics())} of "
              f"{run.read_config().get('epochs')})", file=sys.stderr)
    model = load_model(folder, device="cpu", weights=weights)
    if input_shape is None:
        kwargs = RunFolder(folder).read_model_kwargs() or {}
        if "in_channels" in kwargs and "image_size" in kwargs:
            input_shape = (kwargs["in_channels"], *kwargs["image_size"])
    return model, input_shape


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), _quiet_input_checks():
        traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path))


@contextlib.contextmanager
def _quiet_input_checks() -> Iterator[None]:
    """Tracing warns twice about `models/normalize.py`'s input check (the channel count, a
    constant of the model, read as a Python int, and the shape test on it): the trace keeps
    the check's outcome for valid inputs, which is all it needs, and `_check_same_logits` then
    compares the exported file with the model on another batch size. Exactly those two
    warnings are silenced; any other TracerWarning (e.g. of a user's model) is shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Converting a tensor to a Python (integer|boolean)",
                                torch.jit.TracerWarning, r"robustlab\.models\.normalize$")
        yield


def _onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError("format onnx needs the onnx package: pip install "
                          "'robustlab[export]'") from None
    # The TorchScript-based exporter: the newer one needs onnxscript and more, for no gain on
    # these feed-forward classifiers; its deprecation notice is not the user's concern.
    with warnings.catch_warnings(), _quiet_input_checks():
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
