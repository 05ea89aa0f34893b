"""Adversarial examples on disk (`robustlab evaluate --save-adv DIR`): one safetensors file per
attack, `DIR/<attack>.safetensors`, holding `x_adv` `[N, C, H, W]` float32 (the effective
inputs the numbers were measured on: an output outside the budget is replaced by the clean
image, as in the metrics), `labels` `[N]` int64 and `robust` `[N]` uint8 (1 = the model stayed
right), with the attack, eps, norm and settings key as metadata. Written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from robustlab.common.errors import ConfigError
from robustlab.common.files import replace_refusal
from robustlab.runs.checkpoint import write_safetensors


def adv_path(folder: str | Path, attack: str) -> Path:
    return Path(folder) / f"{attack}.safetensors"


def check_adv_folder(folder: str | Path, attacks: list[str] | tuple[str, ...], *,
                     overwrite: bool) -> None:
    """Before any compute: `folder` can be created and written, and no file of these attacks
    is there already unless `overwrite`."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--save-adv {folder}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--save-adv {folder}: cannot create it ({err.strerror})") from None
    taken = [str(adv_path(path, a)) for a in attacks if adv_path(path, a).exists()]
    if taken and not overwrite:
        raise ConfigError(f"--save-adv: {', '.join(taken)} already exist(s); pass --overwrite "
                          "to replace them (results are never overwritten silently)")
    for attack in attacks:
        refusal = replace_refusal(adv_path(path, attack), is_adv_file)
        if refusal:
            raise ConfigError(f"--save-adv: {refusal}")


def is_adv_file(path: Path) -> bool:
    """Whether `path` is a file `save_adversarial` wrote: safetensors holding x_adv, labels and
    robust, with the attack named in its metadata (what --overwrite may replace)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys, meta = set(handle.keys()), handle.metadata() or {}
    except SafetensorError:
        return False
    return keys == {"x_adv", "labels", "robust"} and "attack" in meta


def save_adversarial(folder: str | Path, attack: str, x_adv: Tensor, labels: Tensor,
                     robust: Tensor, meta: dict[str, Any]) -> Path:
    tensors = {"x_adv": x_adv.contiguous(), "labels": labels.long().cpu().contiguous(),
               "robust": robust.to("cpu").byte().contiguous()}
    metadata = {k: json.dumps(v) for k, v in {"attack": attack, **meta}.items()}
    path = adv_path(folder, attack)
    write_safetensors(path, tensors, metadata)
    return path
