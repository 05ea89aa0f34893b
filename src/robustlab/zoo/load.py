"""`load_pretrained(name)`: a zoo entry's model, rebuilt from its card (registry name and
keyword arguments), its weights file's SHA-256 checked against the card, read with safetensors
only, in eval mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from robustlab.common.device import resolve_device
from robustlab.models import create_model
from robustlab.runs.checkpoint import WeightsError, load_weights
from robustlab.zoo.cards import ZooError, card_path, file_sha256, read_card


def load_pretrained(name: str, *, device: str = "auto",
                    zoo_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """The zoo's model `name` in eval mode on `device`, taking [0, 1] images; its card (dataset,
    threat model, training command, clean / AutoAttack accuracy) is `model.card`.

    The weights file's SHA-256 must equal the card's (a changed file is refused in one line
    naming it and both digests). `zoo_dir`: another zoo folder (default: `$ROBUSTLAB_ZOO`,
    else the models robustlab ships)."""
    card = read_card(name, zoo_dir)
    weights = check_weights_file(card, card_path(name, zoo_dir))
    model = build_model(card, card_path(name, zoo_dir))
    try:
        load_weights(weights, model)  # safetensors, strict; the tensors' own digest checked
    except WeightsError as err:
        raise ZooError(str(err)) from None
    model.card = card
    return model.to(resolve_device(device)).eval()


def check_weights_file(card: dict[str, Any], path: Path, *, refusing: str = "load it") -> Path:
    """The entry's weights file, beside its card, with the card's SHA-256 (else one line ending
    "refusing to `refusing`")."""
    weights = path.parent / str(card["weights"]["file"])
    if weights.parent != path.parent or not weights.is_file():
        raise ZooError(f"{weights}: weights file of pretrained model {card['name']!r} not "
                       f"found (named by {path})")
    digest, expected = file_sha256(weights), str(card["weights"]["sha256"]).lower()
    if digest != expected:
        raise ZooError(f"{weights}: SHA-256 {digest} does not match the model card's "
                       f"{expected} ({path}); refusing to {refusing}")
    return weights


def build_model(card: dict[str, Any], path: Path) -> nn.Module:
    """The card's architecture (`model.name` with `model.kwargs`), randomly initialised."""
    spec = card["model"]
    kwargs = spec["kwargs"]
    if not isinstance(kwargs, dict):
        raise ZooError(f"{path}: model.kwargs: expected an object, got {type(kwargs).__name__}")
    try:
        return create_model(spec["name"], **kwargs)
    except (TypeError, ValueError) as err:
        raise ZooError(f"{path}: model: cannot build {spec['name']!r} from its kwargs "
                       f"({err})") from None
