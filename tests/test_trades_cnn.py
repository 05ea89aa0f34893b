"""The TRADES MNIST network (`trades-cnn`): TRADES' architecture and key names, its parameter
count, and it trains like every registered model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.models import count_parameters, create_model

MNIST = dict(num_classes=10, in_channels=1, mean=(0.1307,), std=(0.3081,), image_size=28)


def _reference_layout() -> list[tuple[str, tuple[int, ...]]]:
    """TRADES' SmallCNN (models/small_cnn.py) as (state-dict key, shape), written out by hand
    from its definition: 4 convs 32/32/64/64 (3x3, no padding), fc 1024 -> 200 -> 200 -> 10."""
    convs = [("conv1", 1, 32), ("conv2", 32, 32), ("conv3", 32, 64), ("conv4", 64, 64)]
    fcs = [("fc1", 1024, 200), ("fc2", 200, 200), ("fc3", 200, 10)]
    out = []
    for name, c_in, c_out in convs:
        out += [(f"feature_extractor.{name}.weight", (c_out, c_in, 3, 3)),
                (f"feature_extractor.{name}.bias", (c_out,))]
    for name, n_in, n_out in fcs:
        out += [(f"classifier.{name}.weight", (n_out, n_in)), (f"classifier.{name}.bias", (n_out,))]
    return out


def test_the_body_has_trades_keys_and_shapes_and_312k_parameters():
    model = create_model("trades-cnn", **MNIST)
    body = [(k, tuple(v.shape)) for k, v in model.body.state_dict().items()]
    assert body == _reference_layout()
    assert count_parameters(model) == 312_202  # conv 65k + fc 247k: the "312 k" of the paper


def test_a_trades_state_dict_loads_key_for_key_and_gives_its_logits():
    """A state dict in TRADES' key names loads into the body unchanged; the body's logits are
    the plain composition of those layers (normalisation is the wrapper's first layer)."""
    torch.manual_seed(0)
    model = create_model("trades-cnn", **MNIST).eval()
    state = {k: torch.randn(shape) * 0.05 for k, shape in _reference_layout()}
    model.body.load_state_dict(state)
    x = torch.rand(4, 1, 28, 28)
    z = (x - 0.1307) / 0.3081
    for i in (1, 2, 3, 4):
        z = torch.relu(nn.functional.conv2d(z, state[f"feature_extractor.conv{i}.weight"],
                                            state[f"feature_extractor.conv{i}.bias"]))
        if i % 2 == 0:
            z = nn.functional.max_pool2d(z, 2)
    z = z.flatten(1)
    for i in (1, 2):
        z = torch.relu(z @ state[f"classifier.fc{i}.weight"].T + state[f"classifier.fc{i}.bias"])
    z = z @ state["classifier.fc3.weight"].T + state["classifier.fc3.bias"]
    torch.testing.assert_close(model(x), z, rtol=1e-5, atol=1e-5)


def test_it_starts_at_uniform_logits_and_learns_a_few_steps(one_thread):
    """The last layer starts at zero (TRADES' init): equal logits, loss ln 10; a few Adam steps
    on a fixed batch lower the loss."""
    torch.manual_seed(0)
    model = create_model("trades-cnn", **MNIST)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loss0 = nn.functional.cross_entropy(model(x), y)
    assert loss0.item() == pytest.approx(torch.log(torch.tensor(10.0)).item(), abs=1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(model(x), y).item() < 0.5 * loss0.item()


def test_bad_inputs_are_one_line():
    with pytest.raises(ConfigError, match=r"dropout: expected a finite number in \[0, 1\)"):
        create_model("trades-cnn", **MNIST, dropout=1.0)
    with pytest.raises(ValueError, match="trades-cnn"):
        create_model("trades-cnn", **{**MNIST, "image_size": 12})
