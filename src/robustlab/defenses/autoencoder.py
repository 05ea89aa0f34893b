"""Denoising-autoencoder defense (MagNet's "reformer", Meng & Chen 2017).

The DEFENSE `autoencoder` puts a trained denoising autoencoder (the MODEL
`denoising-autoencoder`, `robustlab.models.autoencoder`) in front of a classifier:
`classifier(autoencoder(x))`. The defense receives the autoencoder as a module; it opens no
run folder. A run trained with `--method autoencoder` is loaded by the runs layer:
`robustlab.load_model(RUN)` from Python, or the runs layer itself when a training config's
`defense_options` name the run (`autoencoder_run`, declared in `RUN_MODELS`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from robustlab.common.options import Option
from robustlab.defenses.base import (
    DefenseError,
    PreprocessingDefense,
    RunModel,
    check_image_batch,
)
from robustlab.models.autoencoder import AUTOENCODER_MODEL
from robustlab.registry import DEFENSES


@DEFENSES.register("autoencoder")
class AutoencoderDefense(PreprocessingDefense):
    """`classifier(autoencoder(x))`.

    `autoencoder`: the image-to-image `nn.Module` (e.g. `robustlab.load_model(RUN)` of a run
    trained with `--method autoencoder`). The autoencoder is submodule `autoencoder`: the
    wrapper's state_dict holds `autoencoder.*` and `classifier.*`. Differentiable and
    deterministic, so plain white-box gradients go through it (no BPDA, no EOT needed).
    """

    OPTIONS: ClassVar[dict[str, Option]] = {
        "autoencoder_run": Option(None, "str", "run folder trained with --method autoencoder "
                                  "(in a training config; the runs layer loads its model)",
                                  allow_none=True),
        "freeze": Option(True, "bool", "the autoencoder's parameters get requires_grad = False "
                         "(training a classifier behind it leaves it unchanged)"),
    }
    RUN_MODELS: ClassVar[dict[str, RunModel]] = {
        "autoencoder_run": RunModel("autoencoder", AUTOENCODER_MODEL,
                                    f"train one with --model {AUTOENCODER_MODEL} "
                                    "--method autoencoder"),
    }

    def __init__(self, model: nn.Module, *, autoencoder: nn.Module | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        if autoencoder is None and self.autoencoder_run is not None:
            raise DefenseError(
                f"autoencoder_run: a defense opens no run folder; pass "
                f"autoencoder=robustlab.load_model({self.autoencoder_run!r}) (a training "
                "config's defense_options may name the run: the runs layer loads it)")
        if not isinstance(autoencoder, nn.Module):
            raise DefenseError(
                "autoencoder: expected an nn.Module (the trained autoencoder, e.g. "
                "robustlab.load_model(RUN) of a run trained with --method autoencoder), got "
                f"{type(autoencoder).__name__}")
        self.autoencoder = autoencoder
        if self.freeze:
            self.autoencoder.requires_grad_(False)

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        out = self.autoencoder(x)
        if out.shape != x.shape:
            raise DefenseError(
                f"autoencoder: must map inputs to the same shape, got {tuple(x.shape)} -> "
                f"{tuple(out.shape)}"
            )
        return out
