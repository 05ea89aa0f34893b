"""Preprocessing defenses on random inputs: shapes, ranges, flags, BPDA, randomness, saving."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustlab.defenses import (
    DefenseError,
    DenoisingAutoencoder,
    PreprocessingDefense,
    create_defense,
    list_defenses,
)
from robustlab.defenses.median import median_filter
from robustlab.models import create_model
from robustlab.registry import DEFENSES, MODELS

# name -> (options, nondifferentiable, randomized)
DEFENSE_CASES = {
    "bit-depth": ({"bits": 1}, True, False),
    "median": ({"size": 3}, True, False),
    "gaussian-noise": ({"sigma": 0.2}, False, True),
    "jpeg": ({"quality": 50}, True, False),
    "autoencoder": ({}, False, False),
}


def lenet(seed: int = 0, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("lenet5", num_classes=10, in_channels=channels, mean=[0.5] * channels,
                        std=[0.25] * channels, image_size=28).eval()


def build(name: str, seed: int = 0, channels: int = 1) -> PreprocessingDefense:
    options = dict(DEFENSE_CASES[name][0])
    if name == "autoencoder":
        torch.manual_seed(seed + 100)
        options["autoencoder"] = DenoisingAutoencoder(in_channels=channels, width=8)
    return create_defense(name, model=lenet(seed, channels), **options)


def images(n: int = 6, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_every_defense_and_the_autoencoder_model():
    assert list_defenses() == sorted(DEFENSE_CASES)
    assert list_defenses() == DEFENSES.list()
    assert "denoising-autoencoder" in MODELS


@pytest.mark.parametrize("name", sorted(DEFENSE_CASES))
def test_shapes_range_and_flags(name):
    defense = build(name)
    _, nondiff, randomized = DEFENSE_CASES[name]
    assert isinstance(defense, nn.Module)
    assert defense.nondifferentiable is nondiff
    assert defense.randomized is randomized
    assert callable(defense.bpda_forward)
    x = images()
    z = defense.transform(x)
    assert z.shape == x.shape and z.dtype == x.dtype
    assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    assert defense(x).shape == (6, 10)


@pytest.mark.parametrize("name", sorted(DEFENSE_CASES))
def test_bpda_forward_value_equals_forward(name):
    defense = build(name)
    x = images()
    torch.manual_seed(3)
    plain = defense(x)
    torch.manual_seed(3)
    bpda = defense.bpda_forward(x)
    torch.testing.assert_close(bpda, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(DEFENSE_CASES))
def test_state_dict_round_trips_through_safetensors(name, tmp_path):
    defense = build(name, seed=0)
    state = defense.state_dict()
    assert any(k.startswith("classifier.") for k in state)
    if name == "autoencoder":
        assert any(k.startswith("autoencoder.") for k in state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    other = build(name, seed=1)
    x = images()
    torch.manual_seed(0)
    before = other(x)
    other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    torch.manual_seed(0)
    expected = defense(x)
    torch.manual_seed(0)
    after = other(x)
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_bit_depth_values_and_bpda_gradient():
    defense = build("bit-depth")
    x = images()
    z = defense.transform(x)
    assert set(torch.unique(z).tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(z, (x > 0.5).float())
    three = create_defense("bit-depth", model=lenet(), bits=3)
    assert set(torch.unique(three.transform(x)).mul(7).round().tolist()) <= set(range(8))
    xr = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(defense(xr).logsumexp(1).sum(), xr)
    assert float(plain.abs().max()) == 0.0  # rounding kills the gradient
    xr = x.clone().requires_grad_(True)
    (bpda,) = torch.autograd.grad(defense.bpda_forward(xr).logsumexp(1).sum(), xr)
    assert float(bpda.abs().max()) > 0.0
    # identity BPDA: the gradient is the classifier's gradient at the squeezed input
    zr = z.clone().requires_grad_(True)
    (at_z,) = torch.autograd.grad(defense.classifier(zr).logsumexp(1).sum(), zr)
    torch.testing.assert_close(bpda, at_z)


def test_median_filter_matches_a_direct_computation():
    x = images(2, channels=3, seed=1)[..., :7, :9]
    out = median_filter(x, 3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    for i in range(7):
        for j in range(9):
            window = padded[:, :, i : i + 3, j : j + 3].reshape(2, 3, 9)
            torch.testing.assert_close(out[:, :, i, j], window.median(dim=2).values)
    # a lone bright pixel disappears; a constant image is unchanged
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    assert float(median_filter(dot, 3).max()) == 0.0
    flat = torch.full((1, 1, 6, 6), 0.3)
    torch.testing.assert_close(median_filter(flat, 5), flat)


def test_median_works_on_channels_last_inputs():
    defense = build("median")
    x = images()
    torch.testing.assert_close(defense(x.contiguous(memory_format=torch.channels_last)),
                               defense(x))


def test_gaussian_noise_is_random_repeatable_and_active_in_both_modes():
    defense = build("gaussian-noise")
    x = images()
    for mode in (True, False):
        defense.train(mode)
        torch.manual_seed(7)
        a = defense.transform(x)
        torch.manual_seed(7)
        b = defense.transform(x)
        c = defense.transform(x)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, c)
        assert not torch.equal(a, x)
    noise = (defense.transform(torch.full((64, 1, 28, 28), 0.5)) - 0.5).flatten()
    assert abs(float(noise.std()) - 0.2) < 0.01  # sigma = 0.2, clipping is rare at 0.5
    # differentiable: the plain gradient is non-zero
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(defense(xr).logsumexp(1).sum(), xr)
    assert float(grad.abs().max()) > 0.0


def test_jpeg_quantises_and_keeps_a_smooth_image():
    defense = create_defense("jpeg", model=lenet(), quality=90)
    smooth = torch.linspace(0, 1, 28).view(1, 1, 1, 28).expand(2, 1, 28, 28).contiguous()
    z = defense.transform(smooth)
    assert float((z - smooth).abs().max()) < 0.05
    torch.testing.assert_close(z * 255, (z * 255).round())
    rgb = create_defense("jpeg", model=lenet(channels=3), quality=10)
    assert rgb.transform(images(2, channels=3)).shape == (2, 3, 28, 28)


def test_jpeg_without_pillow_fails_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DefenseError, match="jpeg: this defense needs Pillow"):
        create_defense("jpeg", model=lenet(), quality=50)


def test_autoencoder_defense_is_differentiable_and_frozen():
    defense = build("autoencoder")
    assert all(not p.requires_grad for p in defense.autoencoder.parameters())
    assert all(p.requires_grad for p in defense.classifier.parameters())
    xr = images().requires_grad_(True)
    (grad,) = torch.autograd.grad(defense(xr).logsumexp(1).sum(), xr)
    assert float(grad.abs().max()) > 0.0
    ae = DenoisingAutoencoder(in_channels=3)
    for hw in ((28, 28), (32, 32), (15, 9)):
        x = torch.rand(2, 3, *hw)
        with torch.no_grad():
            out = ae(x)
        assert out.shape == x.shape and float(out.min()) > 0 and float(out.max()) < 1


def test_stacked_defenses_inherit_flags_and_bpda():
    inner = create_defense("bit-depth", model=lenet(), bits=1)
    outer = create_defense("gaussian-noise", model=inner, sigma=0.1)
    assert outer.nondifferentiable and outer.randomized
    assert not type(outer).nondifferentiable  # the class's own declaration is unchanged
    x = images()
    torch.manual_seed(0)
    plain = outer(x)
    torch.manual_seed(0)
    xr = x.clone().requires_grad_(True)
    bpda = outer.bpda_forward(xr)
    torch.testing.assert_close(bpda, plain, rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(bpda.logsumexp(1).sum(), xr)
    assert float(grad.abs().max()) > 0.0


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("bit-depth", {"bits": 0}, r"bits: expected an integer in \[1, 16\], got 0"),
        ("bit-depth", {"bits": 2.5}, "bits: expected an integer"),
        ("median", {"size": 4}, "size: expected an odd window size"),
        ("median", {"size": 0}, "size: expected an integer >= 1"),
        ("gaussian-noise", {"sigma": -0.1}, "sigma: expected a finite number > 0"),
        ("gaussian-noise", {"sigma": 0.1, "clip": "yes"}, "clip: expected true or false"),
        ("jpeg", {"quality": 101}, r"quality: expected an integer in \[1, 100\]"),
        ("autoencoder", {}, "autoencoder: expected an nn.Module"),
        ("autoencoder", {"autoencoder": 3}, "autoencoder: expected an nn.Module"),
        ("autoencoder", {"autoencoder_run": "/nonexistent/run"}, "opens no run folder"),
    ],
)
def test_bad_options_fail_before_compute(name, options, message):
    with pytest.raises(DefenseError, match=message):
        create_defense(name, model=lenet(), **options)


def test_unknown_option_and_unknown_name():
    with pytest.raises(DefenseError, match="unknown option.*bits for defense 'median'; known"):
        create_defense("median", model=lenet(), bits=3)
    with pytest.raises(KeyError, match="unknown defense 'bitdepth'.*Did you mean 'bit-depth'"):
        create_defense("bitdepth", model=lenet())
    with pytest.raises(DefenseError, match="model: a defense wraps a classifier nn.Module"):
        create_defense("median", model="lenet5")


def test_median_window_too_large_for_the_image():
    defense = create_defense("median", model=nn.Flatten(), size=9)
    with pytest.raises(DefenseError, match="size: a 9x9 window needs images larger"):
        defense(torch.rand(1, 1, 4, 4))


def test_gaussian_noise_requires_sigma():
    with pytest.raises(DefenseError, match=r"defense 'gaussian-noise' needs option\(s\) sigma"):
        create_defense("gaussian-noise", model=lenet())
