"""Reader for the IDX format of MNIST / Fashion-MNIST (gzip-compressed `.gz` or raw).

IDX layout: 2 zero bytes, 1 type byte (0x08 = unsigned byte), 1 byte with the number of
dimensions D, then D big-endian uint32 sizes, then the data in C order. Image files are
D=3 (magic 0x00000803: N x H x W), label files D=1 (magic 0x00000801: N).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustlab.data.errors import DataError

UBYTE = 0x08


@dataclass(frozen=True)
class IdxArray:
    """A decoded IDX file: uint8 array plus provenance.

    `sha256` is the digest of the *decompressed* IDX bytes (header included), which is the same
    for the `.gz` and the raw file and for any re-compression of it.
    """

    array: np.ndarray
    path: Path
    sha256: str


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.gz` if present, else the raw `folder/stem`, else None."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """The file's decompressed bytes (gzip detected by its magic, not by its name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DataError(f"{path}: truncated gzip file: expected a complete gzip stream, found "
                        f"{len(raw)} bytes ending early ({exc})") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip file: expected a valid gzip stream, found "
                        f"an error while decompressing ({exc})") from exc


def read_idx(path: Path, ndim: int) -> IdxArray:
    """Decode an unsigned-byte IDX file with `ndim` dimensions; validate header and length."""
    data = read_bytes(path)
    expected_magic = (UBYTE << 8) | ndim
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file: expected at least a 4-byte header, "
                        f"found {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path}: wrong IDX magic number: expected 0x{expected_magic:08x} "
                        f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}), "
                        f"found 0x{magic:08x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file: expected a {header}-byte header, "
                        f"found {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_len:
        kind = "truncated IDX file" if len(data) < expected_len else "IDX file too long"
        raise DataError(f"{path}: {kind}: header declares shape {shape}, so expected "
                        f"{expected_len} bytes, found {len(data)} bytes")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return IdxArray(array=array, path=path, sha256=hashlib.sha256(data).hexdigest())
