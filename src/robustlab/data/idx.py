"""Reader for the IDX format of MNIST / Fashion-MNIST (gzip-compressed `.gz` or raw).

IDX layout: 2 zero bytes, 1 type byte (0x08 = unsigned byte), 1 byte with the number of
dimensions D, then D big-endian uint32 sizes, then the data in C order. Image files are
D=3 (magic 0x00000803: N x H x W), label files D=1 (magic 0x00000801: N).

Files are read as a stream (decompressed on the fly for gzip): the header is read and checked
first, the payload size it declares is refused above `MAX_PAYLOAD_BYTES`, and then exactly that
many bytes are read in chunks, so a "gzip bomb" or a corrupt header never costs more memory than
the (capped) declared payload.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from robustlab.data.errors import DataError

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"
# Largest payload (decompressed data after the header) accepted, in bytes: 1 GiB, 20x the
# 47 MB of the MNIST training images; a header declaring more is refused before any read.
MAX_PAYLOAD_BYTES = 1 << 30
CHUNK_BYTES = 1 << 20


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


class _Reader:
    """The decompressed bytes of `path` as a stream (gzip detected by its magic, not by its
    name); every read error becomes a `DataError` naming the file. Counts the bytes read."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path = path
        self.gzip = fh.read(2) == GZIP_MAGIC
        fh.seek(0)
        self.stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if self.gzip else fh
        self.count = 0

    def readinto(self, view: memoryview) -> int:
        """Fill `view` as far as the stream allows; the number of bytes read."""
        filled = 0
        while filled < len(view):
            n = self._call(self.stream.readinto, view[filled:filled + CHUNK_BYTES])
            if not n:
                break
            filled += n
        self.count += filled
        return filled

    def read(self, size: int) -> bytes:
        buf = bytearray(size)
        return bytes(buf[: self.readinto(memoryview(buf))])

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except EOFError as exc:
            raise DataError(f"{self.path}: truncated gzip file: expected a complete gzip "
                            f"stream, found it ending early after {self.count} decompressed "
                            f"bytes ({exc})") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(f"{self.path}: corrupt gzip file: expected a valid gzip stream, "
                            f"found an error while decompressing ({exc})") from exc
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {exc}") from exc


@contextlib.contextmanager
def _open(path: Path) -> Iterator[_Reader]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    with fh:
        yield _Reader(path, fh)


def iter_bytes(path: Path, max_bytes: int | None = None) -> Iterator[bytes]:
    """The file's decompressed bytes in chunks of at most `CHUNK_BYTES`; `DataError` once
    more than `max_bytes` (default: `MAX_PAYLOAD_BYTES` plus room for a header) come out."""
    if max_bytes is None:
        max_bytes = MAX_PAYLOAD_BYTES + CHUNK_BYTES
    with _open(path) as reader:
        while True:
            chunk = reader.read(CHUNK_BYTES)
            if not chunk:
                return
            if reader.count > max_bytes:
                raise DataError(f"{path}: too large: expected at most {max_bytes} decompressed "
                                f"bytes, found more")
            yield chunk


def payload_sha256(path: Path) -> str:
    """SHA-256 of the file's decompressed bytes (streamed, capped as in `iter_bytes`)."""
    h = hashlib.sha256()
    for chunk in iter_bytes(path):
        h.update(chunk)
    return h.hexdigest()


def read_bytes(path: Path) -> bytes:
    """The file's decompressed bytes (gzip detected by its magic), capped as in `iter_bytes`."""
    return b"".join(iter_bytes(path))


def read_idx(path: Path, ndim: int, *, max_bytes: int | None = None) -> IdxArray:
    """Decode an unsigned-byte IDX file with `ndim` dimensions, streaming: header first, then
    exactly the payload it declares (at most `max_bytes` bytes, default `MAX_PAYLOAD_BYTES`),
    then a check that nothing follows."""
    if max_bytes is None:
        max_bytes = MAX_PAYLOAD_BYTES
    with _open(path) as reader:
        header = _read_header(reader, ndim)
        shape = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        size = int(np.prod(shape, dtype=object))  # exact: no int64 overflow
        expected_len = len(header) + size
        if size > max_bytes:
            raise DataError(f"{path}: header declares shape {shape}, i.e. {size} bytes of "
                            f"data, above the cap of {max_bytes} bytes; expected an IDX file "
                            f"of at most that size (a corrupt or hostile file?)")
        array = np.empty(size, dtype=np.uint8)  # pages are only committed as they are filled
        got = reader.readinto(memoryview(array))
        if got < size:
            raise DataError(f"{path}: truncated IDX file: header declares shape {shape}, so "
                            f"expected {expected_len} bytes, found {len(header) + got} bytes")
        if reader.read(1):
            found = (f"{path.stat().st_size} bytes" if not reader.gzip
                     else f"more than {expected_len} bytes")
            raise DataError(f"{path}: IDX file too long: header declares shape {shape}, so "
                            f"expected {expected_len} bytes, found {found}")
    digest = hashlib.sha256(header)
    digest.update(memoryview(array))
    return IdxArray(array=array.reshape(shape), path=path, sha256=digest.hexdigest())


def _read_header(reader: _Reader, ndim: int) -> bytes:
    """The 4-byte magic + `ndim` uint32 sizes, checked; `DataError` naming the file if not."""
    path = reader.path
    magic_bytes = reader.read(4)
    if len(magic_bytes) < 4:
        raise DataError(f"{path}: truncated IDX file: expected at least a 4-byte header, "
                        f"found {len(magic_bytes)} bytes")
    expected_magic = (UBYTE << 8) | ndim
    magic = int.from_bytes(magic_bytes, "big")
    if magic != expected_magic:
        raise DataError(f"{path}: wrong IDX magic number: expected 0x{expected_magic:08x} "
                        f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}), "
                        f"found 0x{magic:08x}")
    dims = reader.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX file: expected a {4 + 4 * ndim}-byte header, "
                        f"found {4 + len(dims)} bytes")
    return magic_bytes + dims
