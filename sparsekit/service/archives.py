"""Unpacking an uploaded model archive (``.tar``, ``.tar.gz``, ``.zip``: one ``.onnx`` plus its
external-data files) into a fresh folder, checking every member BEFORE anything of it is written.

Refused: absolute names, ``..``, backslashes, links (symbolic or hard), devices, FIFOs and anything
but regular files (and the folders holding them), encrypted zip members, a repeated name, more
than ``max_members`` members, more than ``max_bytes`` unpacked in all, a member whose bytes differ
from the size its header declares (writing stops as soon as it passes it), a compression ratio
past :data:`MAX_RATIO`, and not exactly one ``.onnx``. Tar headers are read through a reader that
refuses any single read larger than :data:`MAX_HEADER_READ` (a pax header declaring gigabytes is
refused, not allocated). The format is told by the file's first bytes, never by a client's name.
Nothing here parses ONNX.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
"""Bytes copied per read (1 MiB)."""

MAX_HEADER_READ = 4 * CHUNK
"""Largest single read a tar header may ask for (pax / GNU long-name data; real ones are bytes)."""

MAX_RATIO = 200
"""Most unpacked bytes per compressed byte, judged once :data:`RATIO_FLOOR` bytes are unpacked
(weights compress about 1.1-3x, zero-filled 2:4 weights included; deflate tops out near 1000x)."""

RATIO_FLOOR = 16 * CHUNK

MAX_DEPTH = 8
"""Most folder levels a member's name may have."""

ONNX_SUFFIX = ".onnx"


class ArchiveRefused(Exception):
    """An archive the service does not unpack: HTTP ``status`` (413 too large, 422 otherwise) and
    the client's one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may hold.

    Attributes:
        max_members: members (files and folders) in the archive.
        max_bytes: bytes unpacked in all.
    """

    max_members: int
    max_bytes: int


@dataclass
class Unpacked:
    """An unpacked archive: ``onnx`` the one ONNX file (relative to the folder), ``files`` every
    regular file written (relative, the ONNX included), ``bytes`` their total size."""

    onnx: str
    files: list[str]
    bytes: int


def archive_kind(path: Path) -> str | None:
    """``tar``, ``tar.gz`` or ``zip`` from the file's first bytes; None for anything else (an ONNX
    file included)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    return None


def member_path(name: str) -> PurePosixPath:
    """A member's name as a safe relative path (``./`` prefixes dropped).

    Raises:
        ArchiveRefused: empty, absolute, a drive letter, a backslash, ``..``, a NUL or too deep.
    """
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveRefused(422, f"archive member '{name[:200]}' has an absolute or malformed name; members must be plain relative paths")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(422, f"archive member '{name[:200]}' leaves the archive's folder ('..')")
    if not parts:
        raise ArchiveRefused(422, f"archive member '{name[:200]}' has an empty name")
    if len(parts) > MAX_DEPTH:
        raise ArchiveRefused(422, f"archive member '{name[:200]}' is nested more than {MAX_DEPTH} folders deep")
    return PurePosixPath(*parts)


class _Unpacker:
    """Writes checked members into ``dest`` and keeps the running totals."""

    def __init__(self, dest: Path, limits: ArchiveLimits, compressed_bytes) -> None:
        self.dest, self.limits, self.compressed_bytes = dest, limits, compressed_bytes
        self.members, self.total = 0, 0
        self.files: list[str] = []
        self.seen: set[str] = set()

    def count(self, name: str) -> PurePosixPath:
        """One more member: its safe path (refused past the member cap or when repeated)."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveRefused(422, f"the archive has more than {self.limits.max_members} members, the most this service takes")
        rel = member_path(name)
        if str(rel) in self.seen:
            raise ArchiveRefused(422, f"archive member '{rel}' appears twice")
        self.seen.add(str(rel))
        return rel

    def inside(self, rel: PurePosixPath) -> Path:
        """``dest / rel``, checked to resolve inside ``dest`` (a second line behind :func:`member_path`)."""
        target = self.dest / rel
        root = os.path.realpath(self.dest)
        if not os.path.realpath(target).startswith(root + os.sep):
            raise ArchiveRefused(422, f"archive member '{rel}' leaves the archive's folder")
        return target

    def folder(self, rel: PurePosixPath) -> None:
        try:
            self.inside(rel).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ArchiveRefused(422, f"archive member '{rel}' clashes with another member's name") from exc

    def file(self, rel: PurePosixPath, declared: int, reader) -> None:
        """Copy one regular member of ``declared`` bytes from ``reader`` (a ``read(n)`` callable)."""
        if declared < 0 or self.total + declared > self.limits.max_bytes:
            raise ArchiveRefused(413, f"the archive unpacks to more than {self.limits.max_bytes >> 20} MiB, the most this service takes")
        if rel.suffix.lower() == ONNX_SUFFIX and any(f.lower().endswith(ONNX_SUFFIX) for f in self.files):
            raise ArchiveRefused(422, "the archive holds more than one .onnx file; send one model (its .onnx plus its external-data files)")
        target = self.inside(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise ArchiveRefused(422, f"archive member '{rel}' clashes with another member's name") from exc
        written = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := reader(CHUNK):
                written += len(chunk)
                if written > declared:
                    raise ArchiveRefused(422, f"archive member '{rel}' holds more than the {declared} bytes its header declares")
                self.total += len(chunk)
                self._check_ratio()
                out.write(chunk)
        if written != declared:
            raise ArchiveRefused(422, f"archive member '{rel}' holds {written} bytes but its header declares {declared}")
        self.files.append(str(rel))

    def _check_ratio(self) -> None:
        packed = self.compressed_bytes()
        if self.total > RATIO_FLOOR and self.total > MAX_RATIO * max(packed, 1):
            raise ArchiveRefused(413, f"the archive unpacks to more than {MAX_RATIO} times its compressed size (a decompression bomb?); send the files uncompressed (.tar)")

    def result(self) -> Unpacked:
        onnx = [f for f in self.files if f.lower().endswith(ONNX_SUFFIX)]
        if not onnx:
            raise ArchiveRefused(422, "the archive holds no .onnx file; send the model's .onnx with its external-data files")
        return Unpacked(onnx[0], self.files, self.total)


class _BoundedReader:
    """A read-only file for ``tarfile`` that refuses any single read over :data:`MAX_HEADER_READ`
    (member data is read in :data:`CHUNK` pieces, so only header data can ask for more)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_HEADER_READ:
            raise ArchiveRefused(422, "a tar header declares more extended-header data than any real archive holds")
        return self.inner.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def seekable(self) -> bool:
        return True


def _unpack_tar(raw, compressed: bool, unpacker: _Unpacker) -> None:
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
    try:
        with tarfile.open(fileobj=_BoundedReader(stream), mode="r:") as tar:
            while (member := tar.next()) is not None:
                rel = unpacker.count(member.name)
                if member.isdir():
                    unpacker.folder(rel)
                elif member.issparse():
                    raise ArchiveRefused(422, f"archive member '{rel}' is a sparse file; send regular files only")
                elif member.isreg():
                    data = tar.extractfile(member)
                    unpacker.file(rel, member.size, data.read)
                elif member.issym() or member.islnk():
                    raise ArchiveRefused(422, f"archive member '{rel}' is a link; send regular files only")
                else:
                    raise ArchiveRefused(422, f"archive member '{rel}' is not a regular file (a device, FIFO or other special file); send regular files only")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the service's own disk, not the archive
        raise ArchiveRefused(422, f"the archive is not a readable tar file ({' '.join(str(exc).split())[:200]})") from exc


def _unpack_zip(raw, unpacker: _Unpacker) -> None:
    try:
        with zipfile.ZipFile(raw) as zf:
            infos = zf.infolist()
            if len(infos) > unpacker.limits.max_members:
                raise ArchiveRefused(422, f"the archive has more than {unpacker.limits.max_members} members, the most this service takes")
            for info in infos:
                rel = unpacker.count(info.filename)
                mode = info.external_attr >> 16
                if info.flag_bits & 0x1:
                    raise ArchiveRefused(422, f"archive member '{rel}' is encrypted; send it unencrypted")
                if stat.S_ISLNK(mode):
                    raise ArchiveRefused(422, f"archive member '{rel}' is a link; send regular files only")
                if info.is_dir():
                    unpacker.folder(rel)
                    continue
                if mode and not stat.S_ISREG(mode):
                    raise ArchiveRefused(422, f"archive member '{rel}' is not a regular file (a device, FIFO or other special file); send regular files only")
                with zf.open(info) as data:
                    unpacker.file(rel, info.file_size, data.read)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as exc:
        raise ArchiveRefused(422, f"the archive is not a readable zip file ({' '.join(str(exc).split())[:200]})") from exc


def unpack_archive(path: Path, kind: str, dest: Path, limits: ArchiveLimits) -> Unpacked:
    """Unpack the archive ``path`` of ``kind`` (see :func:`archive_kind`) into the fresh folder
    ``dest`` (created here; the caller removes it on failure).

    Memory: one :data:`CHUNK` at a time (plus a zip's central directory, at most the upload).

    Raises:
        ArchiveRefused: a member or the archive breaks a rule of the module docstring.
        OSError: the service's disk failed (full, unwritable).
    """
    dest.mkdir(mode=0o700)
    with open(path, "rb") as raw:
        unpacker = _Unpacker(dest, limits, raw.tell)
        if kind == "zip":
            _unpack_zip(raw, unpacker)
        else:
            _unpack_tar(raw, kind == "tar.gz", unpacker)
    return unpacker.result()
