"""`eval_mode(model)`: run a block in eval mode and give every submodule its own mode back.

`model.eval(); ...; model.train(was)` resets *every* submodule to the top module's mode, so a
frozen part kept in eval mode inside a training model (e.g. a preprocessing autoencoder) would
come back in training mode. This helper records each submodule's flag and restores it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in modes:
            module.training = was_training
