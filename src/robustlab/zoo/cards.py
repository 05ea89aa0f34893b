"""A zoo entry's model card: what it is, how it was trained and measured, and the digest of its
weights file. `ZOO/NAME.json` beside `ZOO/NAME.safetensors`; the card is written last, so its
presence marks a whole entry. Every problem is one `ZooError` line naming the file and field."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from robustlab.common.errors import ConfigError
from robustlab.common.files import FileFormatError, read_json
from robustlab.common.vocabulary import ZOO_CARD_SCHEMA

ZOO_ENV = "ROBUSTLAB_ZOO"  # a zoo folder used instead of the shipped one
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
NOTHING_SHIPPED = "no pretrained models shipped yet"
_CHUNK = 1 << 20

# field -> its sub-fields that must be present (None: any value) in every card
CARD_FIELDS: dict[str, tuple[str, ...]] = {
    "schema": (),
    "name": (),
    "dataset": (),
    "dataset_options": (),
    "model": ("name", "kwargs"),
    "threat_model": ("norm", "eps"),
    "weights": ("file", "sha256", "tensors_sha256", "which"),
    "training": ("command", "config", "commit", "train_time_s", "run"),
    "evaluation": ("clean_acc", "autoattack_acc", "n", "command", "attack", "commit",
                   "clean_acc_interval", "autoattack_acc_interval", "interval"),
}


class ZooError(ConfigError):
    """A zoo entry that cannot be found, verified, loaded or added; one line naming the entry
    or the file and what was expected (exit status 2 on the command line)."""


def default_zoo_dir() -> Path:
    """`$ROBUSTLAB_ZOO` when set, else the folder of the models robustlab ships."""
    env = os.environ.get(ZOO_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "models"


def zoo_folder(zoo_dir: str | os.PathLike[str] | None) -> Path:
    return default_zoo_dir() if zoo_dir is None else Path(zoo_dir)


def list_pretrained(zoo_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of the entries in the zoo folder (cards `NAME.json`), sorted; [] when none."""
    folder = zoo_folder(zoo_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if NAME_PATTERN.match(p.stem))


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ZooError(f"name: expected lower-case letters, digits, '.', '_' or '-' (e.g. "
                       f"mnist-lenet5-linf), got {name!r}")
    return name


def card_path(name: str, zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """The card of entry `name`; an unknown name is one line listing the known ones."""
    folder = zoo_folder(zoo_dir)
    path = folder / f"{name}.json"
    if isinstance(name, str) and NAME_PATTERN.match(name) and path.is_file():
        return path
    known = list_pretrained(folder)
    where = f"{NOTHING_SHIPPED} (zoo folder {folder})" if not known else \
        f"available: {', '.join(known)}"
    raise ZooError(f"unknown pretrained model {name!r}: {where}; docs/zoo.md")


def read_card(name: str, zoo_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Entry `name`'s card, checked: its schema, every field of `CARD_FIELDS`, its name."""
    path = card_path(name, zoo_dir)
    try:
        card = read_json(path)
    except FileFormatError as err:
        raise ZooError(str(err)) from None
    check_card(card, path)
    if card["name"] != name:
        raise ZooError(f"{path}: name: expected {name!r} (the file's name), got "
                       f"{card['name']!r}")
    return card


def check_card(card: Any, path: Path | str) -> dict[str, Any]:
    """`card` if it holds every field of `CARD_FIELDS`; else one line naming the field."""
    if not isinstance(card, dict):
        raise ZooError(f"{path}: expected a JSON object (a model card), got "
                       f"{type(card).__name__}")
    if card.get("schema") != ZOO_CARD_SCHEMA:
        raise ZooError(f"{path}: schema: expected {ZOO_CARD_SCHEMA!r}, got "
                       f"{card.get('schema')!r}")
    for field, subfields in CARD_FIELDS.items():
        if field not in card:
            raise ZooError(f"{path}: {field}: missing (a model card has "
                           f"{', '.join(CARD_FIELDS)})")
        if subfields and not isinstance(card[field], dict):
            raise ZooError(f"{path}: {field}: expected an object, got "
                           f"{type(card[field]).__name__}")
        for sub in subfields:
            if sub not in card[field]:
                raise ZooError(f"{path}: {field}.{sub}: missing")
    _check_per_image(card["evaluation"], path)
    return card


def _check_per_image(evaluation: dict[str, Any], path: Path | str) -> None:
    """`evaluation.per_image` (optional; cards before it lack it): `clean` and `autoattack`,
    each a string of n characters "0" / "1", one per test image."""
    per = evaluation.get("per_image")
    if per is None:
        return
    n = evaluation.get("n")
    for part in ("clean", "autoattack"):
        bits = per.get(part) if isinstance(per, dict) else None
        if not isinstance(bits, str) or len(bits) != n or set(bits) - {"0", "1"}:
            shown = (f"a string of {len(bits)} characters" if isinstance(bits, str)
                     else type(bits).__name__)
            raise ZooError(f"{path}: evaluation.per_image.{part}: expected a string of n = {n} "
                           f"characters 0 / 1 (one per test image), got {shown}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()
