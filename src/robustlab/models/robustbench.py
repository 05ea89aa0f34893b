"""`load_robustbench(name)`: a RobustBench model, built from robustlab's definitions of its
architecture and loaded from RobustBench's checkpoint file without running pickled code.

The file comes from the cache (`<cache>/<dataset>/<threat model>/<name>.pt`, as RobustBench
names it), from a path the caller gives (`path=`, offline), or from RobustBench's download
location (only with `download=True`). Every load checks the file's SHA-256: against the
entry's digest when the table has one, else against the digest recorded beside the file the
first time it loaded (trust on first use: `<name>.pt.sha256`). The file is read with
`torch.load(weights_only=True)` only; its state dict is unwrapped (`state_dict` /
`model_state_dict`, `module.` and `model.` prefixes, the normalisation wrapper's `mu`/`sigma`,
`normalize.mean`/`.std` or `mean`/`std`), renamed where robustlab's keys differ, and loaded
strictly. Once loaded, a safetensors copy (`<name>.safetensors`, with `<name>.json` holding the
entry, the source digest and the copy's digest) is written to the cache and used from then on.
Every problem is one `RobustBenchError` line naming the file. See docs/robustbench.md.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_bytes, atomic_write_json

from .common import NormalizedClassifier
from .factory import create_model
from .robustbench_entries import DATASETS, ENTRIES, THREAT_MODELS, RobustBenchEntry

MAX_DOWNLOAD_BYTES = 4 << 30  # the largest entries (WRN-70-16) are about 1.1 GB
_CHUNK = 1 << 20
_WRAPPERS = ("state_dict", "model_state_dict")
_PREFIXES = ("module.", "model.")
_NORMALIZATION_KEYS = (("normalize.mean", "normalize.std"), ("mu", "sigma"), ("mean", "std"))


class RobustBenchError(ConfigError):
    """A RobustBench entry that cannot be found, downloaded, verified or loaded; one line
    naming the entry or the file and what was expected (exit status 2 on the command line)."""


def find_entry(name: str, *, dataset: str = "cifar10", threat_model: str = "Linf"
               ) -> RobustBenchEntry:
    """The table's entry `name` for `dataset` and `threat_model` (Linf or L2, any case)."""
    tm = {t.lower(): t for t in THREAT_MODELS}.get(str(threat_model).lower())
    if tm is None:
        raise RobustBenchError(f"threat model: expected one of {', '.join(THREAT_MODELS)}, "
                               f"got {threat_model!r}")
    if dataset not in DATASETS:
        raise RobustBenchError(f"dataset: expected one of {', '.join(DATASETS)} for a "
                               f"RobustBench entry, got {dataset!r}")
    for entry in ENTRIES:
        if (entry.name, entry.dataset, entry.threat_model) == (name, dataset, tm):
            return entry
    here = sorted({e.name for e in ENTRIES if (e.dataset, e.threat_model) == (dataset, tm)})
    close = difflib.get_close_matches(str(name), here, n=4, cutoff=0.5)
    elsewhere = [f"{e.dataset}/{e.threat_model}" for e in ENTRIES if e.name == name]
    hint = (f"; it is listed for {', '.join(elsewhere)}" if elsewhere else
            f"; close names: {', '.join(close)}" if close else
            f"; known: {', '.join(here)}")
    raise RobustBenchError(f"unknown RobustBench entry {name!r} for {dataset} {tm}{hint} "
                           "(docs/robustbench.md lists them)")


def load_robustbench(name: str, *, dataset: str = "cifar10", threat_model: str = "Linf",
                     path: str | os.PathLike[str] | None = None,
                     cache_dir: str | os.PathLike[str] | None = None, download: bool = False,
                     device: str | torch.device = "cpu") -> NormalizedClassifier:
    """RobustBench's model `name`, in eval mode on `device`, taking [0, 1] images; its entry
    (threat model, eps, reported clean / AutoAttack accuracy) is `model.robustbench`.

    `path`: the checkpoint file on disk (offline); else the cache's copy, downloaded first
    when `download=True`. The file's SHA-256 is checked on every load (docs/robustbench.md).
    """
    entry = find_entry(name, dataset=dataset, threat_model=threat_model)
    folder = cache_folder(entry, cache_dir)
    model = build_model(entry)
    if path is None:
        _load_from_cache_or_download(model, entry, folder, download)
    else:
        _load_file(model, entry, folder, Path(path))
    model.robustbench = entry
    return model.to(device).eval()


def build_model(entry: RobustBenchEntry) -> NormalizedClassifier:
    """The entry's architecture, randomly initialised, with its normalisation in front."""
    _classes, channels, size = DATASETS[entry.dataset]
    return create_model(entry.architecture, num_classes=entry.num_classes,
                        in_channels=channels, mean=list(entry.mean), std=list(entry.std),
                        image_size=size, **entry.options)


def cache_folder(entry: RobustBenchEntry, cache_dir: str | os.PathLike[str] | None) -> Path:
    """`<cache_dir>/<dataset>/<threat model>`; the default cache is
    `$XDG_CACHE_HOME/robustlab/robustbench` (`~/.cache/robustlab/robustbench`)."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "robustlab" / "robustbench"
    return Path(cache_dir) / entry.dataset / entry.threat_model


def _load_from_cache_or_download(model: nn.Module, entry: RobustBenchEntry, folder: Path,
                                 download: bool) -> None:
    source = folder / f"{entry.name}.pt"
    expected = _expected_digest(entry, folder)
    if expected is not None and _load_cached_copy(model, entry, folder, expected[0]):
        return
    if not source.is_file():
        if not download:
            raise RobustBenchError(
                f"{entry.name}: {source} is not in the cache; pass --download (download=True) "
                f"to fetch it from {entry.url}, or --robustbench-file PATH (path=) for a copy "
                "on disk")
        _download_checkpoint(model, entry, source)
    _load_file(model, entry, folder, source)


def _load_file(model: nn.Module, entry: RobustBenchEntry, folder: Path, file: Path) -> None:
    """Verify `file`'s digest, then load the cache's safetensors copy of it if there is one,
    else the file itself (writing the copy); record the digest on its first load."""
    if not file.is_file():
        raise RobustBenchError(f"{file}: checkpoint file not found (RobustBench entry "
                               f"{entry.name})")
    digest = file_sha256(file)
    expected = _expected_digest(entry, folder)
    if expected is not None and digest != expected[0]:
        raise RobustBenchError(f"{file}: SHA-256 {digest} does not match the expected "
                               f"{expected[0]} ({expected[1]}); refusing to load it")
    if _load_cached_copy(model, entry, folder, digest):
        return
    load_checkpoint(model, entry, file)
    _write_cached_copy(model, entry, folder, digest)
    if expected is None:
        atomic_write_json(_digest_record(entry, folder), {
            "sha256": digest, "file": str(file.resolve()), "entry": entry.name,
            "note": "recorded at the first load (trust on first use); delete this file to "
                    "accept another file for this entry"})


def _expected_digest(entry: RobustBenchEntry, folder: Path) -> tuple[str, str] | None:
    """(digest, where it comes from): the table's, else the one recorded at first use."""
    if entry.sha256:
        return entry.sha256.lower(), "robustlab's table of RobustBench entries"
    record = _digest_record(entry, folder)
    if not record.is_file():
        return None
    try:
        value = json.loads(record.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RobustBenchError(f"{record}: unreadable digest record ({type(err).__name__}); "
                               "expected JSON with a \"sha256\" field") from None
    return str(value), f"recorded at its first load in {record}"


def _digest_record(entry: RobustBenchEntry, folder: Path) -> Path:
    return folder / f"{entry.name}.pt.sha256"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---- the safetensors copy in the cache -------------------------------------------------------

def _load_cached_copy(model: nn.Module, entry: RobustBenchEntry, folder: Path,
                      source_digest: str) -> bool:
    """Load `<name>.safetensors` if it exists and was made from the file of SHA-256
    `source_digest`; True if it was loaded. A copy whose own digest differs from the one
    recorded when it was written is refused."""
    meta_path, copy = folder / f"{entry.name}.json", folder / f"{entry.name}.safetensors"
    if not (meta_path.is_file() and copy.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # a damaged record: convert the source again
    if meta.get("source_sha256") != source_digest:
        return False
    if meta.get("sha256") != file_sha256(copy):
        raise RobustBenchError(f"{copy}: SHA-256 differs from the one recorded in {meta_path} "
                               "when robustlab wrote it; delete both to convert the "
                               "checkpoint again")
    from safetensors.torch import load_file

    try:
        model.load_state_dict(load_file(str(copy)), strict=True)
    except RuntimeError as err:  # written for another definition of the architecture
        raise RobustBenchError(f"{copy}: does not fit {entry.architecture} "
                               f"({_first_line(err)}); delete it and {meta_path} to convert "
                               "the checkpoint again") from None
    return True


def _write_cached_copy(model: nn.Module, entry: RobustBenchEntry, folder: Path,
                       source_digest: str) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    # bytes written by Python: a full disk is an OSError naming the file (runs/checkpoint.py's
    # write_safetensors does the same for the layers above)
    copy = atomic_write_bytes(folder / f"{entry.name}.safetensors", save(state))
    atomic_write_json(folder / f"{entry.name}.json", {
        "schema": "robustlab.robustbench-copy/1", "entry": entry.metadata(),
        "source_sha256": source_digest, "sha256": file_sha256(copy)})


# ---- reading RobustBench's checkpoint format --------------------------------------------------

def load_checkpoint(model: nn.Module, entry: RobustBenchEntry, file: Path) -> None:
    """Read `file` (weights_only), convert RobustBench's layout to `model`'s keys, load it
    strictly; a mismatch is one line naming the first missing / unexpected keys."""
    state = convert_state_dict(read_checkpoint(file), entry, file)
    expected = model.state_dict()
    for key in expected:  # PyTorch < 0.4.1 files have no BatchNorm step counters
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(expected[key])
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise RobustBenchError(
            f"{file}: checkpoint keys do not match {entry.architecture} ({entry.name}): "
            f"missing {_names(missing)}, unexpected {_names(unexpected)}")
    wrong = [f"{_strip_body(k)} {list(state[k].shape)} (model {list(v.shape)})"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise RobustBenchError(f"{file}: checkpoint shapes do not match {entry.architecture} "
                               f"({entry.name}): {', '.join(wrong[:3])}")
    model.load_state_dict(state, strict=True)


def read_checkpoint(file: Path) -> dict[str, torch.Tensor]:
    """The state dict in `file`, read with `torch.load(weights_only=True)` (no pickled code
    runs), unwrapped from `{"state_dict": ...}` / `{"model_state_dict": ...}`."""
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (a pickled object), RuntimeError, EOFError, ...
        raise RobustBenchError(
            f"{file}: not a checkpoint loadable with torch.load(weights_only=True) "
            f"({_first_line(err)}); robustlab never unpickles it further") from None
    while isinstance(obj, dict) and any(isinstance(obj.get(w), dict) for w in _WRAPPERS):
        obj = next(obj[w] for w in _WRAPPERS if isinstance(obj.get(w), dict))
    if not isinstance(obj, dict) or not obj:
        raise RobustBenchError(f"{file}: expected a state dict (name -> tensor), got "
                               f"{'an empty dict' if obj == {} else type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise RobustBenchError(f"{file}: expected a state dict (name -> tensor); "
                               f"{', '.join(bad[:3])} are not tensors")
    return dict(obj)


def convert_state_dict(state: dict[str, torch.Tensor], entry: RobustBenchEntry,
                       file: Path) -> dict[str, torch.Tensor]:
    """RobustBench's keys -> robustlab's: prefixes stripped, the normalisation wrapper's
    mean/std moved to `normalize.*` (the entry's values when the file has none), the
    architecture's keys under `body.` (renamed for `entry.key_map`)."""
    plain = {_strip_prefixes(k): v for k, v in state.items()}
    if len(plain) != len(state):
        raise RobustBenchError(f"{file}: two keys differ only by a 'module.'/'model.' prefix")
    mean, std = torch.tensor(entry.mean), torch.tensor(entry.std)
    for mean_key, std_key in _NORMALIZATION_KEYS:
        if mean_key in plain and std_key in plain:
            mean, std = plain.pop(mean_key), plain.pop(std_key)
    rename = KEY_MAPS[entry.key_map] if entry.key_map else (lambda k: k)
    out = {f"body.{rename(k)}": v for k, v in plain.items()}
    channels = DATASETS[entry.dataset][1]
    out["normalize.mean"] = mean.detach().float().reshape(1, channels, 1, 1)
    out["normalize.std"] = std.detach().float().reshape(1, channels, 1, 1)
    return out


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def preact_key(key: str) -> str:
    """RobustBench's PreActResNet-18 (`PreActBlockV2`, `bn_before_fc=True`, the L2
    Rice2020Overfitting entry) -> robustlab's `preact_resnet18`: `conv1` -> `stem`,
    `layer<s>.<i>` -> `layers.<2(s-1)+i>`, `shortcut.0` -> `shortcut`, `linear` -> `fc`."""
    if key.startswith("conv1."):
        return "stem." + key[len("conv1."):]
    if key.startswith("linear."):
        return "fc." + key[len("linear."):]
    match = re.match(r"layer([1-4])\.([01])\.(.*)$", key)
    if match:
        stage, index, rest = int(match[1]), int(match[2]), match[3]
        rest = rest.replace("shortcut.0.", "shortcut.")
        return f"layers.{2 * (stage - 1) + index}.{rest}"
    return key


KEY_MAPS: dict[str, Callable[[str], str]] = {"preact": preact_key}


def _names(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(_strip_body(k) for k in keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def _strip_body(key: str) -> str:
    return key[len("body."):] if key.startswith("body.") else key


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


# ---- downloading ------------------------------------------------------------------------------

def fetch(url: str, dest: Path) -> None:
    """Copy the bytes at `url` into `dest` (the only network access here; tests replace it),
    refusing more than `MAX_DOWNLOAD_BYTES`."""
    request = urllib.request.Request(url, headers={"User-Agent": "robustlab"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310
        copied = 0
        while block := response.read(_CHUNK):
            copied += len(block)
            if copied > MAX_DOWNLOAD_BYTES:
                raise RobustBenchError(f"{url}: more than {MAX_DOWNLOAD_BYTES} bytes; expected "
                                       "a RobustBench checkpoint (all are smaller)")
            out.write(block)


def _download_checkpoint(model: nn.Module, entry: RobustBenchEntry, dest: Path) -> None:
    """Download the entry's file beside `dest`, check it (the table's digest if any; it must
    load into `model`), then rename it into place: a failed or foreign download (an HTML page)
    never appears under the real name, and its digest is never recorded."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            fetch(entry.download_url, tmp)
        except OSError as err:  # URLError, timeouts, HTTP errors
            raise RobustBenchError(f"{entry.name}: download from {entry.url} failed ({err}); "
                                   f"download it by hand and pass --robustbench-file") from None
        with open(tmp, "rb") as fh:
            if fh.read(1) == b"<":
                raise RobustBenchError(f"{entry.name}: {entry.url} returned a web page, not "
                                       "the checkpoint; download it by hand and pass "
                                       "--robustbench-file")
        if entry.sha256 and file_sha256(tmp) != entry.sha256.lower():
            raise RobustBenchError(f"{entry.name}: the download from {entry.url} has SHA-256 "
                                   f"{file_sha256(tmp)}, expected {entry.sha256}")
        load_checkpoint(model, entry, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)

