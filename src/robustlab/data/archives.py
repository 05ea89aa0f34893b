"""Safe, atomic extraction of the official dataset archives (`.tar.gz` and `.zip`).

Only regular files inside the archive's one top folder are extracted: no links, no absolute or
`..` paths, no other top folder. Every declared member size is checked before the member is
read (a member above `max_member` bytes, or a running total above `max_total`, is refused) and
the copy itself is capped at the declared size. Files go to a temporary folder inside `target`
that is renamed to `target/<folder>` only once everything required is there, so a failed
extraction never leaves a half-extracted dataset under the real name.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from robustlab.data.download import copy_capped
from robustlab.data.errors import DataError


@dataclass(frozen=True)
class ArchiveLayout:
    """What an archive must hold. `folder`: its one top folder; `required`: paths (relative to
    `folder`, '/'-separated) that must be extracted; `flat`: only files directly inside
    `folder` (else any depth); `skip`: first path parts below `folder` left out (e.g. an
    unlabeled test set); caps in bytes."""

    folder: str
    required: tuple[str, ...]
    max_member: int
    max_total: int
    flat: bool = True
    skip: tuple[str, ...] = ()


def _relative(layout: ArchiveLayout, name: str) -> tuple[str, ...] | None:
    """`name`'s parts below the top folder; () for the folder itself; None when it lies
    elsewhere or is not a plain relative path."""
    path = PurePosixPath(name)
    parts = path.parts
    if path.is_absolute() or any(p in ("..", ".", "") for p in parts) or not parts \
            or parts[0] != layout.folder:
        return None
    return parts[1:]


def _refuse(archive: Path, name: str, layout: ArchiveLayout) -> DataError:
    where = "directly inside" if layout.flat else "inside"
    return DataError(f"{archive}: unexpected member {name!r}: expected only regular files "
                     f"{where} {layout.folder}/")


class _Extraction:
    """One extraction into a temporary folder: member checks, the running total, the result."""

    def __init__(self, archive: Path, target: Path, layout: ArchiveLayout) -> None:
        self.archive, self.layout, self.total = archive, layout, 0
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{layout.folder}-extract-", dir=target))

    def wanted(self, name: str, is_dir: bool, is_file: bool) -> tuple[str, ...] | None:
        """The member's parts below the top folder if it is to be extracted, None to skip it;
        `DataError` for a member the layout does not allow."""
        rel = _relative(self.layout, name.rstrip("/") if is_dir else name)
        if rel is None or (not rel and not is_dir):
            raise _refuse(self.archive, name, self.layout)
        if not rel or rel[0] in self.layout.skip or (is_dir and not self.layout.flat):
            return None
        if not is_file or (self.layout.flat and len(rel) != 1):
            raise _refuse(self.archive, name, self.layout)
        return rel

    def write(self, name: str, rel: tuple[str, ...], size: int, src: BinaryIO) -> None:
        cap = self.layout
        if size > cap.max_member or self.total + size > cap.max_total:
            raise DataError(f"{self.archive}: member {name!r} declares {size} bytes "
                            f"({self.total} extracted before it); expected at most "
                            f"{cap.max_member} bytes per member and {cap.max_total} in all")
        self.total += size
        dest = self.tmp.joinpath(*rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src, open(dest, "wb") as out:
            copy_capped(src, out, size, label=f"{self.archive}: member {name!r}")

    def finish(self, target: Path) -> Path:
        missing = [r for r in self.layout.required if not self.tmp.joinpath(*r.split("/"))
                   .is_file()]
        if missing:
            raise DataError(f"{self.archive}: expected {', '.join(missing)} inside "
                            f"{self.layout.folder}/, found none")
        final = target / self.layout.folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(self.tmp, final)
        return final


def _extract(archive: Path, target: Path, layout: ArchiveLayout,
             members: Callable[[_Extraction], None]) -> Path:
    try:
        target.mkdir(parents=True, exist_ok=True)
        job = _Extraction(archive, target, layout)
    except OSError as exc:
        raise DataError(f"cannot extract into {target}: {exc}") from exc
    try:
        members(job)
        return job.finish(target)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot extract the archive: {exc}") from exc
    finally:
        if job.tmp.exists():
            shutil.rmtree(job.tmp)


def extract_tar(archive: Path, target: Path, layout: ArchiveLayout) -> Path:
    """Extract `layout.folder` from a `.tar.gz` read as one stream (each member decompressed
    once, in chunks) into `target`; returns `target / layout.folder`."""
    def members(job: _Extraction) -> None:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                rel = job.wanted(member.name, member.isdir(), member.isfile())
                if rel is not None:
                    job.write(member.name, rel, member.size, tar.extractfile(member))

    return _extract(archive, target, layout, members)


def _zip_entries(zf: zipfile.ZipFile) -> Iterable[tuple[zipfile.ZipInfo, bool, bool]]:
    """(info, is_dir, is_file) per member; a symbolic link (by its Unix mode) is neither."""
    for info in zf.infolist():
        mode = info.external_attr >> 16
        link = stat.S_ISLNK(mode)
        yield info, info.is_dir() and not link, not info.is_dir() and not link


def extract_zip(archive: Path, target: Path, layout: ArchiveLayout) -> Path:
    """Extract `layout.folder` from a `.zip` into `target`; returns `target / layout.folder`."""
    def members(job: _Extraction) -> None:
        with zipfile.ZipFile(archive) as zf:
            for info, is_dir, is_file in _zip_entries(zf):
                rel = job.wanted(info.filename, is_dir, is_file)
                if rel is not None:
                    job.write(info.filename, rel, info.file_size, zf.open(info))

    return _extract(archive, target, layout, members)
