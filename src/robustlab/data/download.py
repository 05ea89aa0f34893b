"""Checksum-verified, atomic downloads from the official mirrors (only with `download=True`).

`fetch(url, dest)` is the single function that touches the network; tests replace it.
A file is written to a temporary name beside its destination, verified, and only then renamed
into place, so a partial or corrupt download is never visible under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from robustlab.data.errors import DataError

_CHUNK = 1 << 20
# Largest file one download may write, in bytes (the biggest official file, SVHN's
# extra_32x32.mat, is 1.33 GB).
MAX_DOWNLOAD_BYTES = 3 << 29


def fetch(url: str, dest: Path) -> None:
    """Copy the bytes at `url` into the file `dest` (the only network access in robustlab.data),
    in chunks, refusing more than `MAX_DOWNLOAD_BYTES`."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310
        copy_capped(response, out, MAX_DOWNLOAD_BYTES, label=url)


def copy_capped(src: BinaryIO, out: BinaryIO, max_bytes: int, *, label: str) -> int:
    """Copy `src` to `out` in chunks; `DataError` naming `label` once more than `max_bytes`
    bytes come. Returns the number of bytes copied."""
    copied = 0
    while block := src.read(_CHUNK):
        copied += len(block)
        if copied > max_bytes:
            raise DataError(f"{label}: more than {max_bytes} bytes, the cap for one download; "
                            "expected an official file (all are far smaller)")
        out.write(block)
    return copied


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_digest(path: Path, expected: str, algorithm: str, label: str) -> None:
    """Raise `DataError` naming `label` if `path`'s digest differs from `expected`."""
    found = file_digest(path, algorithm)
    if found != expected.lower():
        raise DataError(f"checksum mismatch for {label}: expected {algorithm} {expected}, "
                        f"found {found}")


def download(urls: Sequence[str], dest: Path, *, sha256: str | None = None,
             md5: str | None = None, check: Callable[[Path, str], None] | None = None) -> Path:
    """Download the first mirror in `urls` that works into `dest`, verified, atomically.

    At least one verification must be given: `sha256` / `md5` of the file (md5 only where the
    publisher gives no sha256), or `check(tmp_path, label)`, which raises `DataError` when the
    content is wrong. A checksum mismatch raises at once (it is not retried on other mirrors);
    unreachable mirrors are skipped, and if none works the `DataError` lists each one and why.
    """
    if sha256 is None and md5 is None and check is None:
        raise DataError(f"download of {dest.name}: no checksum to verify against")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download folder {dest.parent}: {exc}") from exc
    failures: list[str] = []
    for url in urls:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                            dir=dest.parent)
        except OSError as exc:
            raise DataError(f"cannot write into the download folder {dest.parent}: {exc}") from exc
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                fetch(url, tmp)
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, ...
                failures.append(f"  - {url}: {exc}")
                continue
            label = f"{dest.name} downloaded from {url}"
            if sha256 is not None:
                verify_digest(tmp, sha256, "sha256", label)
            if md5 is not None:
                verify_digest(tmp, md5, "md5", label)
            if check is not None:
                check(tmp, label)
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name} from any official mirror:\n"
                    + "\n".join(failures)
                    + f"\nDownload it by hand and place it at {dest}.")
