"""Denoising-autoencoder defense (MagNet's "reformer", Meng & Chen 2017).

The DEFENSE `autoencoder` puts a trained denoising autoencoder (the MODEL
`denoising-autoencoder`, `robustlab.models.autoencoder`) in front of a classifier:
`classifier(autoencoder(x))`. A trained one is read from its run folder through the run-record
modules (`robustlab.runs.folder` / `checkpoint`), which import nothing above `common`.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from torch import Tensor, nn

from robustlab.defenses.base import (
    DefenseError,
    PreprocessingDefense,
    check_flag,
    check_image_batch,
)
from robustlab.models.autoencoder import AUTOENCODER_MODEL, DenoisingAutoencoder
from robustlab.registry import DEFENSES
from robustlab.runs.checkpoint import load_weights
from robustlab.runs.folder import WEIGHTS, RunFolder


def load_autoencoder(run: str | Path) -> DenoisingAutoencoder:
    """The trained autoencoder of a run folder written by `robustlab train --model
    denoising-autoencoder --method autoencoder` (reads config.json and model.safetensors; loads
    no data). Returned on CPU, in eval mode."""
    folder = RunFolder(Path(run))
    if not folder.path.is_dir():
        raise DefenseError(f"autoencoder_run: run folder {folder.path} does not exist")
    cfg = folder.read_config()
    if cfg.get("model") != AUTOENCODER_MODEL:
        raise DefenseError(
            f"autoencoder_run: {folder.path} trained model {cfg.get('model')!r}, expected "
            f"{AUTOENCODER_MODEL!r} (train one with --model {AUTOENCODER_MODEL} "
            "--method autoencoder)"
        )
    weights = folder.file(WEIGHTS)
    if not weights.is_file():
        raise DefenseError(f"autoencoder_run: {weights} does not exist (no finished epoch yet)")
    with safe_open(str(weights), framework="pt") as fh:
        first = fh.get_slice("encoder.0.weight").get_shape()  # [width, C, 3, 3]
    ae = DenoisingAutoencoder(in_channels=first[1], width=first[0])
    load_weights(weights, ae)
    return ae.eval()


@DEFENSES.register("autoencoder")
class AutoencoderDefense(PreprocessingDefense):
    """`classifier(autoencoder(x))`.

    Options (exactly one of the first two): `autoencoder_run` (path of a run folder trained with
    `--method autoencoder`), `autoencoder` (an image-to-image `nn.Module`); `freeze` (default
    True: the autoencoder's parameters get `requires_grad = False`, so training a classifier
    behind it leaves it unchanged). The autoencoder is submodule `autoencoder`: the wrapper's
    state_dict holds `autoencoder.*` and `classifier.*`. Differentiable and deterministic, so
    plain white-box gradients go through it (no BPDA, no EOT needed).
    """


    def __init__(self, *, model: nn.Module, autoencoder_run: str | Path | None = None,
                 autoencoder: nn.Module | None = None, freeze: bool = True) -> None:
        if (autoencoder_run is None) == (autoencoder is None):
            raise DefenseError(
                "autoencoder: give exactly one of autoencoder_run (a run folder trained with "
                "--method autoencoder) and autoencoder (an nn.Module); got "
                f"autoencoder_run={autoencoder_run!r}, autoencoder="
                f"{type(autoencoder).__name__ if autoencoder is not None else None}"
            )
        if autoencoder is not None and not isinstance(autoencoder, nn.Module):
            raise DefenseError(
                f"autoencoder: expected an nn.Module, got {type(autoencoder).__name__}"
            )
        check_flag("freeze", freeze)
        ae = load_autoencoder(autoencoder_run) if autoencoder is None else autoencoder
        super().__init__(model)
        self.autoencoder = ae
        self.freeze = freeze
        if freeze:
            self.autoencoder.requires_grad_(False)
        self.source = str(autoencoder_run) if autoencoder_run is not None else "module"

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        out = self.autoencoder(x)
        if out.shape != x.shape:
            raise DefenseError(
                f"autoencoder: must map inputs to the same shape, got {tuple(x.shape)} -> "
                f"{tuple(out.shape)}"
            )
        return out

    def describe_options(self) -> str:
        return f"autoencoder={self.source!r}, freeze={self.freeze}"
