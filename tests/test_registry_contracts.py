"""One contract per registry, checked on every registered name (like the attack property tests
over the whole attack registry): a new method or dataset is tested the moment it registers."""

from __future__ import annotations

import math

import pytest
import torch
from dataset_files import write_dataset

from robustlab.common.errors import ConfigError
from robustlab.data import AUGMENTATIONS, load_dataset
from robustlab.models import create_model
from robustlab.plugins import load_plugins
from robustlab.registry import DATASETS, METHODS
from robustlab.training import TrainConfig, train

load_plugins()
SYN = {"n_train": 96, "n_test": 32, "image_size": 28}


@pytest.mark.parametrize("name", DATASETS.list())
def test_every_dataset_loads_its_official_format_consistently(name, tmp_path):
    root, options = write_dataset(name, tmp_path / name)
    splits = load_dataset(name, root=root, **options)
    info = splits.info
    assert info.name == name and info.augment in AUGMENTATIONS
    assert len(info.class_names) == info.num_classes >= 2
    assert len(info.mean) == len(info.std) == info.channels
    for split in (splits.train, splits.val, splits.test):
        assert len(split) > 0
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape[1:]) == (info.channels, *info.image_size)
        assert 0.0 <= float(split.x.min()) and float(split.x.max()) <= 1.0
        assert 0 <= int(split.y.min()) and int(split.y.max()) < info.num_classes
    model = create_model("smallcnn", **info.model_kwargs())
    assert model(splits.test.x[:2]).shape == (2, info.num_classes)


def _config(name: str, tmp_path) -> TrainConfig:
    cls = METHODS.get(name)
    fields = dict(dataset="synthetic", dataset_options=SYN, model="lenet5", method=name,
                  epochs=1, batch_size=32, val_size=32, progress=False, lr=0.05,
                  out_dir=str(tmp_path / name))
    if getattr(cls, "needs_eps", False):
        fields["eps"] = 0.1
    if name == "autoencoder":  # trains an image-to-image model
        fields["model"] = "denoising-autoencoder"
    return TrainConfig(**fields)


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_trains_an_epoch_with_its_defaults(name, tmp_path):
    result = train(_config(name, tmp_path))
    row = result.metrics[-1]
    assert math.isfinite(row["train_loss"])
    assert result.summary["epochs_done"] == 1
    assert (result.run_dir / "model.safetensors").is_file()


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_names_an_unknown_option(name, tmp_path):
    cfg = _config(name, tmp_path).replace(method_options={"no_such_option": 1})
    with pytest.raises(ConfigError, match="method_options.*no_such_option"):
        train(cfg)


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_knows_its_registered_name(name):
    assert METHODS.get(name).name == name
