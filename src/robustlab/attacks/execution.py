"""How an attack runs a model fast, kept apart from the attack contract (`base.py`).

- `frozen_parameters`: parameters' `requires_grad` off during the attack (input gradients then
  skip the weight-gradient kernels);
- `input_layout` / `weights_layout_for` / `weights_layout`: the memory layout inputs and
  convolution weights are computed in (`memory_format` of every attack);
- `ClassCounts`: the model's logits width, probed once per model (one forward pass on one
  sample) instead of on every call.
The CPU kernels themselves are in `cpu_kernels.py`, batch bucketing in `attack_model.py`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.attack_model import AttackModel
from robustlab.attacks.inputs import check_logits


def input_layout(memory_format: str, model: nn.Module, x: Tensor) -> torch.memory_format:
    """The layout inputs `x` are converted to for `model` (`memory_format` of the attack)."""
    if x.dim() != 4 or memory_format == "contiguous":
        return torch.contiguous_format
    if memory_format == "channels_last":
        return torch.channels_last
    # Measured on the 2-core CPU (bench/attack_speed.py): channels_last costs ~23 % for
    # 1-channel inputs (LeNet-5 / MNIST), so `auto` keeps those contiguous (CPU and CUDA):
    # common/vocabulary.py AUTO_INPUT_LAYOUT.
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    use = has_conv and x.shape[1] > 1
    return torch.channels_last if use else torch.contiguous_format


def weights_layout_for(memory_format: str, x: Tensor) -> torch.memory_format:
    """channels_last weights only when asked for explicitly, on the CPU (on CUDA a
    model is converted once, by its owner: training does so by default)."""
    if memory_format == "channels_last" and x.device.type == "cpu" and x.dim() == 4:
        return torch.channels_last
    return torch.contiguous_format


class ClassCounts:
    """Logits width per model (weakly keyed), so repeated calls skip the 1-sample probe."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[nn.Module, tuple[Any, int]] = (
            weakref.WeakKeyDictionary())

    def __reduce__(self) -> tuple[type, tuple]:  # a weak cache cannot be pickled: start empty
        return (ClassCounts, ())

    def get(self, model: nn.Module, amodel: AttackModel, x: Tensor) -> int:
        """The model's logits width, probed once per model, input shape and layout."""
        key = (tuple(x.shape[1:]), x.device, amodel.layout)
        cached = self._cache.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        k = probe_classes(amodel, x)
        # keyed by the layout the probe ended with (it falls back to contiguous if needed)
        self._cache[model] = ((key[0], key[1], amodel.layout), k)
        return k


def probe_classes(amodel: AttackModel, x: Tensor) -> int:
    """Logits' width from one forward pass on one sample; falls back to the contiguous
    layout if the model cannot run channels_last inputs (e.g. it uses `.view`). Raises
    `AttackError` unless the model returns a float logits tensor `[1, K]`."""
    try:
        out = amodel.raw_logits(amodel.prepare(x[:1]))
    except RuntimeError:
        if amodel.layout == torch.contiguous_format:
            raise
        amodel.layout = torch.contiguous_format
        out = amodel.raw_logits(x[:1].contiguous())
    return int(check_logits(out, 1).shape[1])


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily set `requires_grad=False` on every parameter of `model` (restored after).

    Input gradients then skip the weight-gradient kernels (measured ~12 % faster per
    forward+backward on LeNet-5 / SmallCNN on CPU); values and `.grad` are never touched.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def weights_layout(model: nn.Module, layout: torch.memory_format) -> Iterator[nn.Module]:
    """Temporarily store `model`'s 4-D (convolution) weights in `layout`; restored after.

    oneDNN picks its convolution kernels by the weights' layout as much as by the input's; the
    original storage of every parameter is put back afterwards, so values, identity and
    optimizer references are untouched.
    """
    if layout == torch.contiguous_format:
        yield model
        return
    params = [p for p in model.parameters()
              if p.dim() == 4 and not p.is_contiguous(memory_format=layout)]
    originals = [p.data for p in params]
    for p in params:
        p.data = p.data.contiguous(memory_format=layout)
    try:
        yield model
    finally:
        for p, data in zip(params, originals, strict=True):
            p.data = data
