"""Datasets and models declare their options once (`common.options.Option`, attached to the
registered factory with `common.options.declare`); `load_dataset` / `create_model` check them
once, through `common/checks.py`, name a bad one as the user spells it and an unknown one from
the declaration (issue #33)."""

from __future__ import annotations

import inspect

import pytest

from robustlab.common.errors import ConfigError
from robustlab.common.options import Option
from robustlab.data import DataError, load_dataset
from robustlab.models import create_model
from robustlab.registry import DATASETS, MODELS

DATASET_COMMON = ("root", "val_size", "split_seed", "download")
MODEL_COMMON = ("num_classes", "in_channels", "mean", "std", "image_size")
GRAY = {"num_classes": 10, "in_channels": 1, "mean": [0.5], "std": [0.5], "image_size": 28}
RGB = {"num_classes": 10, "in_channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
       "image_size": 32}
SYN = {"n_train": 40, "n_test": 10, "image_size": 8}


def _own_parameters(factory, common):
    return {p.name: p for p in inspect.signature(factory).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in common}


@pytest.mark.parametrize(("registry", "name", "common"),
                         [(DATASETS, n, DATASET_COMMON) for n in DATASETS.list()]
                         + [(MODELS, n, MODEL_COMMON) for n in MODELS.list()])
def test_every_factory_declares_exactly_the_options_it_takes(registry, name, common):
    factory = registry.get(name)
    spec = getattr(factory, "OPTIONS", {})
    own = _own_parameters(factory, common)
    assert set(own) == set(spec), f"{name}: takes {sorted(own)}, declares {sorted(spec)}"
    assert all(isinstance(o, Option) for o in spec.values())
    # the declaration holds the one default: the factory's parameters have none
    assert all(p.default is inspect.Parameter.empty for p in own.values())


def test_every_built_in_dataset_with_options_declares_them():
    assert set(DATASETS.get("mnist").OPTIONS) == {"verify"}
    assert set(DATASETS.get("imagefolder").OPTIONS) == {"image_size", "classes",
                                                         "max_per_class", "test_size",
                                                         "workers"}
    assert set(MODELS.get("efficientnet_b0").OPTIONS) == {"dropout", "drop_path_rate",
                                                          "use_timm"}


def test_unknown_dataset_option_is_named_from_the_declaration():
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic", colour=True, **SYN)
    assert str(exc.value) == ("synthetic: unknown option(s) colour for dataset 'synthetic'; "
                              "known: channels, image_size, n_test, n_train, noise, "
                              "num_classes, seed")


def test_declared_defaults_are_the_ones_used():
    d = load_dataset("synthetic")
    assert len(d.train) + len(d.val) == DATASETS.get("synthetic").OPTIONS["n_train"].default
    assert d.info.image_size == (28, 28) and len(d.test) == 200
    model = create_model("efficientnet_b0", **RGB)
    assert (model.spec["dropout"], model.spec["drop_path_rate"], model.spec["use_timm"]) == \
        (0.2, 0.0, False)


@pytest.mark.parametrize(("options", "message"), [
    ({"n_train": 0}, "synthetic n_train: expected an integer >= 1, got 0"),
    ({"n_train": True}, "synthetic n_train: expected an integer >= 1, got True"),
    ({"num_classes": 1}, "synthetic num_classes: expected an integer >= 2, got 1"),
    ({"noise": float("nan")}, "synthetic noise: expected a finite number >= 0, got nan"),
    ({"image_size": (8, True)}, "synthetic image_size[1]: expected an integer >= 1, got True"),
    ({"image_size": "28"}, "synthetic image_size: expected an integer >= 1 or (H, W)"),
    ({"seed": -1}, "synthetic seed: expected an integer in [0, 9223372036854775807], got -1"),
])
def test_bad_dataset_option_is_one_line_naming_it(options, message):
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic", **{**SYN, **options})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_cifar10_download_flag_is_checked_before_any_search(tmp_path):
    """cifar10 read `download` as truthy ('yes' would fetch 170 MB); every dataset's flag is
    now checked once, by load_dataset."""
    with pytest.raises(DataError, match=r"^cifar10 download: expected true or false, got "
                                        r"'yes'$"):
        load_dataset("cifar10", root=tmp_path, download="yes")
    with pytest.raises(DataError, match=r"^cifar10 verify: expected true or false, got 0$"):
        load_dataset("cifar10", root=tmp_path, verify=0)


@pytest.mark.parametrize(("options", "message"), [
    ({"classes": "cat"}, "imagefolder classes: expected a list of names, got 'cat'"),
    ({"workers": 0}, "imagefolder workers: expected an integer >= 1, got 0"),
    ({"max_per_class": 1.5}, "imagefolder max_per_class: expected an integer >= 1, got 1.5"),
    ({"test_size": 1.5}, "imagefolder test_size: expected an integer count >= 0 or a fraction "
                         "in [0, 1), got 1.5"),
    ({"test_size": True}, "imagefolder test_size: expected an integer count >= 0"),
])
def test_imagefolder_options_are_checked_before_the_folder_is_read(tmp_path, options, message):
    with pytest.raises(DataError) as exc:  # tmp_path holds no images: the options fail first
        load_dataset("imagefolder", root=tmp_path, **options)
    assert str(exc.value).startswith(message)


def test_unknown_model_option_is_a_config_error_from_the_declaration():
    with pytest.raises(ConfigError) as exc:
        create_model("lenet5", dropout=0.1, **GRAY)
    assert str(exc.value) == "unknown option(s) dropout for model 'lenet5'; known: (none)"
    with pytest.raises(ConfigError, match=r"known: drop_path_rate, dropout, use_timm$"):
        create_model("efficientnet_b0", width=2, **RGB)


@pytest.mark.parametrize(("options", "message"), [
    ({"dropout": True}, "dropout: expected a finite number in [0, 1), got True"),
    ({"dropout": 1.0}, "dropout: expected a finite number in [0, 1), got 1.0"),
    ({"use_timm": "false"}, "use_timm: expected true or false, got 'false'"),
])
def test_bad_model_option_is_a_config_error_naming_it(options, message):
    with pytest.raises(ConfigError) as exc:
        create_model("efficientnet_b0", **RGB, **options)
    assert str(exc.value) == message


def test_composite_kinds():
    size = Option(28, "size", "image size", low=1)
    assert size.check("s", 8) == 8 and size.check("s", [8, 6]) == (8, 6)
    for bad in (0, (8,), (8, 0), 8.0, True):
        with pytest.raises(ConfigError):
            size.check("s", bad)
    amount = Option(0.1, "amount", "split")
    assert amount.check("a", 5) == 5 and isinstance(amount.check("a", 5), int)
    assert amount.check("a", 0.25) == 0.25
    for bad in (-1, 1.0, True, "0.1"):
        with pytest.raises(ConfigError):
            amount.check("a", bad)
    names = Option(None, "names", "classes", allow_none=True)
    assert names.check("c", ["a", "b"]) == ["a", "b"] and names.check("c", None) is None
    with pytest.raises(ConfigError, match="c: expected a list of names"):
        names.check("c", ["a", 1])
    assert Option(0.2, "float", "d", low=0.0, high=1.0, high_open=True).describe() == \
        "float in [0, 1)"
