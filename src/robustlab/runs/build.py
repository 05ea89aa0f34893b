"""A run's data and model, rebuilt from its `TrainConfig` (for training and for `load_run`).

Everything here runs before the first training step, so a bad value fails fast with a message
naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.data import (
    ArraySplit,
    DataError,
    DatasetInfo,
    DatasetSplits,
    iterate_batches,
    load_dataset,
    random_crop_flip,
)
from robustlab.data.in_memory import CUSTOM
from robustlab.defenses import DefenseError, create_defense
from robustlab.models import create_model
from robustlab.runs.config import TrainConfig
from robustlab.runs.saved import defense_arguments

# The validation/test split is drawn with this fixed seed so every seed and method of an
# experiment is validated on the same images.
SPLIT_SEED = 0


# A CUDA run keeps its training split on the GPU when it takes at most this share of the
# free GPU memory; otherwise it stays in pinned host memory and each batch is copied
# asynchronously (the model, activations and attacks need the rest).
DEVICE_DATA_SHARE = 0.5


@dataclass
class RunData:
    """The splits of a run and how its training batches are drawn. `val` / `test` are on the
    run's device; `train` is too, unless it did not fit (`train_on_device`): then it sits in
    pinned host memory and `batches` copies each batch to `device` (non-blocking)."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    info: DatasetInfo
    batch_size: int
    augment: Any
    device: torch.device | None = None

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.device is None or self.train.device == self.device:
            return iterate_batches(self.train, self.batch_size, shuffle=True,
                                   generator=generator, augment=self.augment)
        return self._host_batches(generator)

    def _host_batches(self, generator: torch.Generator):
        # Same generator calls in the same order as the on-device path: permutation, then
        # one augmentation draw per batch (on the device, after the copy).
        for x, y in iterate_batches(self.train, self.batch_size, shuffle=True,
                                    generator=generator):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            yield (self.augment(x, generator) if self.augment is not None else x), y


def train_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a training split of `nbytes` is kept on `device` (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_DATA_SHARE * free


def load_splits(cfg: TrainConfig) -> DatasetSplits:
    """The dataset's splits. A `TypeError` / `ValueError` from a bad `dataset_options` value
    becomes a `ConfigError` naming `dataset_options`; a `DataError` (missing or bad files, or
    an option the loader itself rejects) passes through unchanged."""
    if cfg.dataset == CUSTOM:
        raise ConfigError("dataset: 'custom' is the name recorded for data passed from Python "
                          "(robustlab.train); it is not on disk to reload. Rebuild the model "
                          "with robustlab.load_model(RUN[, model=...]) and evaluate it on your "
                          "data with robustlab.evaluate(model, x, y, eps=...)")
    try:
        return load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size,
                            split_seed=SPLIT_SEED, download=cfg.download,
                            **cfg.dataset_options)
    except DataError:
        raise
    except (TypeError, ValueError) as err:
        if not cfg.dataset_options:  # not an option's fault: a genuine bug, keep its traceback
            raise
        raise ConfigError(f"dataset_options: {cfg.dataset}: {err} (got "
                          f"{cfg.dataset_options!r})") from None


def load_run_data(cfg: TrainConfig, device: torch.device,
                  splits: DatasetSplits | None = None) -> RunData:
    """The run's splits on `device` (`splits`: data given from Python, else the dataset's)."""
    splits = load_splits(cfg) if splits is None else splits
    train = splits.train
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ConfigError(f"train_size: {cfg.train_size} exceeds the {len(train)} "
                              f"training images of {cfg.dataset}")
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED))
        train = train.subset(keep[: cfg.train_size].sort().values)
    augment_name = splits.info.augment if cfg.augment == "auto" else cfg.augment
    use_crop_flip = augment_name == "crop-flip"
    augment = random_crop_flip(padding=4) if use_crop_flip else None
    val, test = splits.val.to(device), splits.test.to(device)
    if train_on_device(train.x.nbytes + train.y.nbytes, device):
        return RunData(train.to(device), val, test, splits.info, cfg.batch_size, augment)
    pinned = ArraySplit(train.x.pin_memory(), train.y.pin_memory())
    return RunData(pinned, val, test, splits.info, cfg.batch_size, augment, device=device)


def build_model(cfg: TrainConfig, info, device: torch.device) -> nn.Module:
    return build_model_from_kwargs(cfg, info.model_kwargs(), device)


def build_model_from_kwargs(cfg: TrainConfig, model_kwargs: dict[str, Any],
                            device: torch.device) -> nn.Module:
    """The run's model (and its preprocessing defense) from the dataset facts it needs:
    `model_kwargs` (num_classes, in_channels, mean, std, image_size)."""
    return prepare_model(cfg, create_model(cfg.model, **model_kwargs), device)


def prepare_model(cfg: TrainConfig, model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in the run's preprocessing defense (if any), on `device`, in the run's
    memory format: the same for a registered model and one passed from Python."""
    if cfg.defense is not None:
        try:  # a run folder an option names is opened here (runs.saved), not by the defense
            model = create_defense(cfg.defense, model=model,
                                   **defense_arguments(cfg.defense, cfg.defense_options))
        except DefenseError as err:  # the message names the option
            raise ConfigError(f"defense_options: {cfg.defense} {err}") from None
    model = model.to(device)
    if _use_channels_last(cfg, model, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def _use_channels_last(cfg: TrainConfig, model: nn.Module, device: torch.device) -> bool:
    """`auto` (common/vocabulary.py AUTO_WEIGHTS_LAYOUT): channels_last for conv models on CUDA
    only; on the CPU the measured floor (bench/train_speed.py) is slower in channels_last for
    LeNet-5."""
    if cfg.memory_format != "auto":
        return cfg.memory_format == "channels_last"
    return device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
