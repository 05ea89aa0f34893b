"""Model layer: shapes, gradients, normalisation, memory format, argument checks, counts."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from robustlab.models import (
    Normalize,
    NormalizedClassifier,
    count_parameters,
    create_model,
    list_models,
)
from robustlab.models.drop_path import DropPath
from robustlab.registry import MODELS, RegistryError

# name -> (in_channels, image_size) used for the fast forward/backward checks.
INPUTS = {
    "lenet5": (1, 28),
    "smallcnn": (1, 28),
    "trades-cnn": (1, 28),
    "resnet18": (3, 32),
    "preact_resnet18": (3, 32),
    "efficientnet_b0": (3, 32),
}
# Models whose last layer starts at zero (TRADES' init): equal logits before the first step.
ZERO_LAST_LAYER = {"trades-cnn"}
MEAN = {1: [0.1307], 3: [0.4914, 0.4822, 0.4465]}
STD = {1: [0.3081], 3: [0.2470, 0.2435, 0.2616]}
HAS_TIMM = importlib.util.find_spec("timm") is not None


def build(name: str, num_classes: int = 10, **options) -> NormalizedClassifier:
    channels, size = INPUTS[name]
    return create_model(
        name,
        num_classes=num_classes,
        in_channels=channels,
        mean=MEAN[channels],
        std=STD[channels],
        image_size=size,
        **options,
    )


def inputs(name: str, batch: int = 4, seed: int = 0) -> torch.Tensor:
    channels, size = INPUTS[name]
    if name == "efficientnet_b0":  # depthwise convs are slow on CPU; keep its batch small
        batch = min(batch, 2)
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=gen)


# The RobustBench architectures (8M-270M parameters) are tested in tests/test_wide_resnet.py:
# WRN-28-10 and ResNet-50 built once, the others' keys and counts on the meta device.
ROBUSTBENCH_ARCHITECTURES = {"wrn-28-10", "wrn-34-10", "wrn-34-20", "wrn-28-10-silu",
                             "wrn-34-20-silu", "wrn-70-16-silu", "resnet50"}


def test_every_registered_model_has_a_test_input():
    assert (set(list_models()) - {"denoising-autoencoder"} - ROBUSTBENCH_ARCHITECTURES
            == set(INPUTS))
    assert list_models() == MODELS.list()


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_forward_backward_shapes_and_finite_grads(name):
    torch.manual_seed(0)
    model = build(name, num_classes=7)
    x = inputs(name).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (x.shape[0], 7)
    assert torch.isfinite(logits).all()
    labels = torch.tensor([0, 1, 2, 6])[: x.shape[0]]
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if name in ZERO_LAST_LAYER:  # equal logits at init: no input gradient before a step, but
        assert model.body.classifier.fc3.weight.grad.abs().sum() > 0  # the last layer learns
    else:
        assert x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_first_layer_normalises(name):
    torch.manual_seed(0)
    model = build(name).eval()
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    channels, _ = INPUTS[name]
    x = inputs(name)
    mean = torch.tensor(MEAN[channels]).view(1, -1, 1, 1)
    std = torch.tensor(STD[channels]).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.body((x - mean) / std), rtol=0, atol=1e-6)
    state = model.state_dict()
    torch.testing.assert_close(state["normalize.mean"].flatten(), mean.flatten())
    torch.testing.assert_close(state["normalize.std"].flatten(), std.flatten())


def test_normalize_module_values_and_channel_check():
    norm = Normalize([0.5, 0.25], [0.5, 0.25])
    x = torch.tensor([1.0, 0.5]).view(1, 2, 1, 1)
    assert norm(x).flatten().tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"expected input \[N, 2, H, W\], got \(1, 3, 4, 4\)"):
        norm(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize([0.5], [0.0])
    with pytest.raises(ValueError, match="mean has 2 values but std has 1"):
        Normalize([0.5, 0.5], [0.2])


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = build(name).eval()
    x = inputs(name)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_lenet5_other_sizes_and_channels():
    model = create_model(
        "lenet5", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.5] * 3, image_size=32
    )
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model.body.classifier[1].in_features == 16 * 6 * 6
    rect = create_model(
        "lenet5", num_classes=3, in_channels=1, mean=[0.0], std=[1.0], image_size=(28, 36)
    )
    assert rect(torch.rand(2, 1, 28, 36)).shape == (2, 3)


@pytest.mark.parametrize("size", [8, 20])
def test_resnets_take_any_size_from_8(size):
    for name in ("resnet18", "preact_resnet18"):
        model = create_model(
            name, num_classes=5, in_channels=1, mean=[0.5], std=[0.5], image_size=size
        )
        assert model(torch.rand(2, 1, size, size)).shape == (2, 5)


# Exact counts measured for this implementation. LeNet-5 (28x28, 10 classes):
# 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706. EfficientNet-B0 with 1000 classes is
# 5,288,548 (the figure torchvision/timm report); without the classifier 4,007,548 ("4.0M").
PARAM_COUNTS = [
    ("lenet5", 1, 28, 10, 61_706),
    ("lenet5", 3, 32, 10, 83_126),
    ("smallcnn", 1, 28, 10, 3_274_634),
    ("resnet18", 3, 32, 10, 11_173_962),
    ("preact_resnet18", 3, 32, 10, 11_172_170),
    ("efficientnet_b0", 3, 224, 1000, 5_288_548),
    ("efficientnet_b0", 3, 32, 10, 4_020_358),
]


@pytest.mark.parametrize(("name", "channels", "size", "classes", "expected"), PARAM_COUNTS)
def test_parameter_counts(name, channels, size, classes, expected):
    model = create_model(
        name,
        num_classes=classes,
        in_channels=channels,
        mean=[0.5] * channels,
        std=[0.5] * channels,
        image_size=size,
    )
    assert count_parameters(model) == expected


def test_efficientnet_backbone_is_4_0m_and_count_trainable_only():
    model = build("efficientnet_b0", num_classes=1000)
    head = 1280 * 1000 + 1000
    assert count_parameters(model) - head == 4_007_548
    for p in model.body.fc.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4_007_548
    # Buffers (Normalize mean/std, BatchNorm statistics) are not parameters.
    lenet = build("lenet5")
    assert count_parameters(lenet) == sum(p.numel() for p in lenet.body.parameters())


BAD_ARGS = [
    ({"num_classes": 1}, "num_classes: expected an integer >= 2, got 1"),
    ({"num_classes": True}, "num_classes: expected an integer"),
    ({"num_classes": 10.0}, "num_classes: expected an integer"),
    ({"in_channels": 0, "mean": [], "std": []}, "in_channels: expected an integer >= 1, got 0"),
    ({"mean": [0.5, 0.5]}, "mean has 2 values but in_channels=1"),
    ({"std": [0.5, 0.5, 0.5]}, "std has 3 values but in_channels=1"),
    ({"mean": 0.5}, "mean must be a sequence"),
    ({"std": [0.0]}, "std must be > 0"),
    ({"mean": [float("nan")]}, "mean must be finite"),
    ({"image_size": 0}, "image_size: expected an integer >= 1, got 0"),
    ({"image_size": -28}, "image_size: expected an integer >= 1"),
    ({"image_size": (28, 28, 1)}, "image_size must be an int or a"),
    ({"image_size": 8}, r"image_size=\(8, 8\) is too small for lenet5"),
    ({"dropout": 0.1}, r"^unknown option\(s\) dropout for model 'lenet5'; known: \(none\)$"),
]


@pytest.mark.parametrize(("override", "message"), BAD_ARGS)
def test_bad_arguments_name_the_field(override, message):
    kwargs = {"num_classes": 10, "in_channels": 1, "mean": [0.5], "std": [0.5], "image_size": 28}
    kwargs.update(override)
    with pytest.raises(ValueError, match=message):
        create_model("lenet5", **kwargs)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dropout": 1.5}, r"dropout: expected a finite number in \[0, 1\), got 1.5"),
        ({"drop_path_rate": -0.1}, "drop_path_rate: expected a finite number in"),
        ({"use_timm": "yes"}, "use_timm: expected true or false"),
        ({"image_size": 4}, "too small for efficientnet_b0"),
    ],
)
def test_efficientnet_bad_options(override, message):
    kwargs = {"num_classes": 10, "in_channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    kwargs["image_size"] = override.pop("image_size", 32)
    with pytest.raises(ValueError, match=message):
        create_model("efficientnet_b0", **kwargs, **override)


def test_unknown_model_name_suggests():
    with pytest.raises(RegistryError, match="unknown model 'resnet19'.*'resnet18'"):
        create_model(
            "resnet19", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.5] * 3, image_size=32
        )


def test_spec_rebuilds_the_same_architecture():
    model = build("efficientnet_b0", drop_path_rate=0.1)
    assert model.spec["drop_path_rate"] == 0.1 and model.spec["use_timm"] is False
    rebuilt = create_model(**model.spec)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert count_parameters(rebuilt) == count_parameters(model)


def test_drop_path_is_identity_in_eval_and_unbiased_in_training():
    drop = DropPath(0.5)
    x = torch.ones(4000, 3)
    assert drop.eval()(x) is x
    torch.manual_seed(0)
    out = drop.train()(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert (out[:, 0:1] == out).all()  # one decision per sample
    assert abs(out.mean().item() - 1.0) < 0.05
    model = create_model(
        "efficientnet_b0",
        num_classes=3,
        in_channels=1,
        mean=[0.5],
        std=[0.5],
        image_size=8,
        drop_path_rate=0.2,
    ).eval()
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed")
def test_use_timm_without_timm_raises_clearly():
    with pytest.raises(ImportError, match="needs the 'timm' package"):
        build("efficientnet_b0", use_timm=True)


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed")
def test_use_timm_builds_timm_model_behind_normalize():
    model = build("efficientnet_b0", use_timm=True).eval()
    assert isinstance(model.normalize, Normalize)
    assert type(model.body).__module__.startswith("timm")
    assert model(inputs("efficientnet_b0", batch=2)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet5", "preact_resnet18"])
def test_double_backward_for_input_gradient_penalties(name):
    torch.manual_seed(0)
    channels = INPUTS[name][0]
    size = 12 if name == "lenet5" else 8  # (efficientnet_b0 also works; slow on CPU)
    model = create_model(
        name,
        num_classes=4,
        in_channels=channels,
        mean=MEAN[channels],
        std=STD[channels],
        image_size=size,
    )
    x = torch.rand(2, channels, size, size, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
