"""The RobustBench architectures (issue #36): WideResNet-28-10 / 34-10 / 34-20 (RobustBench's
ReLU definition), DeepMind's SiLU WideResNet (28-10, 34-20, 70-16), torchvision's ResNet-50 and
the PreAct-ResNet-18 key mapping, key for key against the reference definitions and, for the
ones built here, logit for logit. Big models are built on the meta device (no memory, no
compute): their keys, shapes and parameter counts, never their outputs."""

from __future__ import annotations

import pytest
import torch
from robustbench_reference import key_shapes, randomise, require
from torch import nn

from robustlab.models import count_parameters, create_model
from robustlab.models.dm_wide_resnet import DMWideResNet
from robustlab.models.preact_resnet import PreActResNet
from robustlab.models.resnet import RESNET18_BLOCKS
from robustlab.models.resnet50 import ResNet50
from robustlab.models.robustbench import preact_key
from robustlab.models.wide_resnet import WideResNet

CIFAR = {"num_classes": 10, "in_channels": 3, "mean": [0.4914, 0.4822, 0.4465],
         "std": [0.2471, 0.2435, 0.2616], "image_size": 32}
# measured with count_parameters (10 classes; ResNet-50 with 1000): docs/models.md
PARAMS = {("wrn", 28, 10, False): 36_479_194, ("wrn", 28, 10, True): 38_119_866,
          ("wrn", 34, 10, False): 46_160_474, ("wrn", 34, 10, True): 48_262_586,
          ("wrn", 34, 20, False): 184_531_674, ("dm", 28, 10, False): 36_479_194,
          ("dm", 34, 20, False): 184_531_674, ("dm", 70, 16, False): 266_796_506}


@pytest.fixture(scope="module")
def wrn28():
    torch.manual_seed(0)
    return create_model("wrn-28-10", **CIFAR).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _ours(kind: str, depth: int, width: int, sub_block1: bool) -> nn.Module:
    if kind == "wrn":
        return WideResNet(depth, width, 10, 3, sub_block1=sub_block1)
    return DMWideResNet(depth, width, 10, 3)


@pytest.mark.reference
@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_keys_and_shapes_are_robustbench_s(arch):
    kind, depth, width, sub_block1 = arch
    with torch.device("meta"):
        ours = _ours(kind, depth, width, sub_block1)
        if kind == "wrn":
            ref = require("wide_resnet").WideResNet(depth=depth, widen_factor=width,
                                                    sub_block1=sub_block1)
        else:
            ref = require("dm_wide_resnet").DMWideResNet(depth=depth, width=width,
                                                         activation_fn=nn.SiLU)
    assert key_shapes(ours) == key_shapes(ref)  # the same names, shapes and order
    assert count_parameters(ours) == count_parameters(ref) == PARAMS[arch]


def test_registered_names_build_the_robustbench_architectures(wrn28, images):
    assert wrn28.spec == {"name": "wrn-28-10", **CIFAR, "image_size": [32, 32],
                          "sub_block1": False}
    assert wrn28(images).shape == (2, 10)
    assert count_parameters(wrn28.body) == PARAMS[("wrn", 28, 10, False)]
    from robustlab.models import list_models

    assert {"wrn-28-10", "wrn-34-10", "wrn-34-20", "wrn-28-10-silu", "wrn-34-20-silu",
            "wrn-70-16-silu", "resnet50"} <= set(list_models())


@pytest.mark.reference
def test_wrn_28_10_logits_equal_robustbench_s(wrn28, images):
    ref = randomise(require("wide_resnet").WideResNet(depth=28, widen_factor=10))
    wrn28.body.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        expected = ref((images - wrn28.normalize.mean) / wrn28.normalize.std)
        torch.testing.assert_close(wrn28(images), expected, rtol=0, atol=1e-5)


@pytest.mark.reference
def test_dm_wrn_logits_equal_robustbench_s(images):
    """A small depth/width of the same definition (the padding, SiLU and keys are what is
    compared; the size only makes it slow): DeepMind's model normalises inside."""
    dm = require("dm_wide_resnet")
    ref = randomise(dm.DMWideResNet(depth=10, width=2, activation_fn=dm.Swish,
                                    mean=dm.CIFAR10_MEAN, std=dm.CIFAR10_STD))
    torch.manual_seed(0)
    ours = DMWideResNet(10, 2, 10, 3).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    mean = torch.tensor(dm.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(dm.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours((images - mean) / std), ref(images), rtol=0,
                                   atol=1e-5)


@pytest.mark.reference
def test_preact_resnet18_loads_robustbench_s_preact_keys_mapped(images):
    """RobustBench's PreActResNet-18 of Rice et al. (PreActBlockV2, bn_before_fc) has other
    key names than robustlab's `preact_resnet18` (same architecture): `preact_key` maps them."""
    rb = require("resnet")
    ref = randomise(rb.PreActResNet(rb.PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True))
    ours = PreActResNet(RESNET18_BLOCKS, 10, 3).eval()
    assert set(ref.state_dict()) != set(ours.state_dict())  # the names differ ...
    mapped = {preact_key(k): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(mapped, strict=True)  # ... one for one
    with torch.no_grad():
        torch.testing.assert_close(ours(images), ref(images), rtol=0, atol=1e-5)


def test_resnet50_is_torchvision_s_key_for_key():
    """torchvision's published resnet50(): 320 state-dict entries, 25,557,032 parameters (its
    docs' figure), these names and shapes (torchvision is not installed here)."""
    with torch.device("meta"):
        model = ResNet50(1000, 3)
    shapes = dict(key_shapes(model))
    assert len(shapes) == 320 and count_parameters(model) == 25_557_032
    assert list(shapes)[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                "bn1.running_var", "bn1.num_batches_tracked",
                                "layer1.0.conv1.weight"]
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)  # v1.5: stride on the 3x3
    assert shapes["layer3.5.bn3.running_var"] == (1024,)
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["fc.weight"] == (1000, 2048) and list(shapes)[-1] == "fc.bias"
    assert not any(k.startswith("layer4.1.downsample") for k in shapes)


def test_resnet50_runs_at_imagenet_and_small_sizes():
    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=5, in_channels=3, mean=[0.5] * 3,
                         std=[0.5] * 3, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="too small for resnet50"):
        create_model("resnet50", num_classes=5, in_channels=3, mean=[0.5] * 3,
                     std=[0.5] * 3, image_size=16)
