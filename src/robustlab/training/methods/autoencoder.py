"""Training a denoising autoencoder (the `autoencoder` preprocessing defense's reformer).

`robustlab train --model denoising-autoencoder --method autoencoder [--opt noise_sigma=0.2]`
trains the model to reconstruct CLEAN inputs from clean, noisy and (optionally) adversarial
versions of them: loss = mean over the views of MSE(model(view), x). The run folder's
`model.safetensors` then holds the autoencoder, and
`create_defense("autoencoder", model=classifier, autoencoder=robustlab.load_model(RUN))` (in a
training config: `defense_options = { autoencoder_run = RUN }`) puts it in front of a
classifier.

The model is not a classifier, so the method declares `reports_accuracy = False`: the loop logs
no train/val/test accuracy for it (`BatchOutput.logits` is None) and the method logs the
validation reconstruction error (`val_mse_clean`, `val_mse_noisy`) from `end_epoch` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from robustlab.common.errors import ConfigError

# Importing the defense module registers the model this method trains (`denoising-autoencoder`),
# so a run folder of it reloads wherever the training package is imported.
from robustlab.models.autoencoder import AUTOENCODER_MODEL
from robustlab.registry import METHODS
from robustlab.training.methods.base import BatchOutput, TrainContext, TrainingMethod
from robustlab.training.methods.options import Option

_VAL_BATCH = 512
_VAL_NOISE_SEED = 12345  # the same noisy validation images at every epoch


@METHODS.register("autoencoder")
class Autoencoder(TrainingMethod):
    """Options:

    - `noise_sigma` (float >= 0, default 0.1, pixel units of [0, 1] images): std of the Gaussian
      noise of the noisy view (0 = no noisy view).
    - `adversarial_run` (path, optional): a classifier run folder (same dataset); adds a view of
      adversarial examples crafted against it with `attack` at the config's `eps` / `norm`.
    - `attack` (default "pgd") and `attack_options` (dict, e.g. `{steps = 10}`) for that view.
    """

    reports_accuracy = False

    OPTIONS: ClassVar[dict[str, Option]] = {
        "noise_sigma": Option(0.1, "float", "std of the noisy view's Gaussian noise (0: none)",
                              low=0.0),
        "adversarial_run": Option(None, "str", "classifier run folder whose adversarial "
                                  "examples form a third view", allow_none=True),
        "attack": Option("pgd", "str", "attack of the adversarial view"),
        "attack_options": Option(None, "table", "options of that attack", allow_none=True),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        adversarial_run, noise_sigma = self.adversarial_run, self.noise_sigma
        if adversarial_run is not None:
            folder = Path(adversarial_run)
            needed = (folder / "config.json", folder / "model.safetensors")
            if not all(f.is_file() for f in needed):
                raise ConfigError(f"method_options.adversarial_run: {folder} is not a finished "
                                  "robustlab run folder (needs config.json and model.safetensors)")
        if noise_sigma == 0 and adversarial_run is None:
            raise ConfigError("method_options: with noise_sigma = 0 and no adversarial_run the "
                              "autoencoder would only learn the identity; give one of them")
        self.attack_options = dict(self.attack_options or {})
        self._classifier = None

    def setup(self, ctx: TrainContext) -> None:
        probe = ctx.train.x[:1].to(ctx.device)  # the train split may stay in host memory
        with torch.no_grad():
            out = ctx.model(probe)
        if out.shape != probe.shape:
            raise ConfigError(
                f"model: method 'autoencoder' trains an image-to-image model (e.g. --model "
                f"{AUTOENCODER_MODEL}); {ctx.cfg.model!r} maps {tuple(probe.shape)} to "
                f"{tuple(out.shape)}"
            )
        if self.adversarial_run is None:
            return
        if ctx.cfg.eps is None:
            raise ConfigError("eps: method 'autoencoder' with adversarial_run needs the attack "
                              "budget eps (pixel units), e.g. --eps 0.3 for MNIST")
        from robustlab.attacks import create_attack
        from robustlab.runs.load import load_run

        loaded = load_run(self.adversarial_run, device=str(ctx.device), data_dir=ctx.cfg.data_dir)
        if loaded.cfg.dataset != ctx.cfg.dataset:
            raise ConfigError(f"method_options.adversarial_run: classifier was trained on "
                              f"{loaded.cfg.dataset!r}, this run uses {ctx.cfg.dataset!r}")
        self._classifier = loaded.model.requires_grad_(False)
        create_attack(self.attack, eps=ctx.cfg.eps, norm=ctx.cfg.norm,
                      **self.attack_options)  # validate the attack's options before training

    def views(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The inputs to reconstruct `x` from: `[V * B, C, H, W]` (clean, noisy, adversarial)."""
        views = [x]
        if self.noise_sigma > 0:
            views.append((x + self.noise_sigma * torch.randn_like(x)).clamp(0.0, 1.0))
        if self._classifier is not None:
            from robustlab.attacks import create_attack

            attack = create_attack(self.attack, eps=ctx.cfg.eps, norm=ctx.cfg.norm,
                                   seed=ctx.step, **self.attack_options)
            views.append(attack(self._classifier, x, y).detach())
        return torch.cat(views)

    def loss(self, model, x, y, ctx):
        inputs = self.views(x, y, ctx)
        recon = model(inputs)
        target = x.repeat(inputs.shape[0] // x.shape[0], 1, 1, 1)
        return BatchOutput(F.mse_loss(recon, target), None)

    def end_epoch(self, ctx: TrainContext) -> dict[str, Any]:
        x = ctx.val.x
        if len(x) == 0:
            return {}
        gen = torch.Generator().manual_seed(_VAL_NOISE_SEED)
        clean = noisy = 0.0
        with torch.no_grad():
            for i in range(0, len(x), _VAL_BATCH):
                xb = x[i : i + _VAL_BATCH]
                clean += F.mse_loss(ctx.model(xb), xb, reduction="sum").item()
                if self.noise_sigma > 0:
                    noise = torch.randn(xb.shape, generator=gen).to(xb.device, xb.dtype)
                    xn = (xb + self.noise_sigma * noise).clamp(0.0, 1.0)
                    noisy += F.mse_loss(ctx.model(xn), xb, reduction="sum").item()
        n = x.numel()
        logs = {"val_mse_clean": clean / n}
        if self.noise_sigma > 0:
            logs["val_mse_noisy"] = noisy / n
        return logs
