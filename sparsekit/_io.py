"""Atomic file writes and output-path guards: never a half-written or clobbered file.

Every file the kit writes goes to a hidden temporary next to its target, named
``.<target name>.<pid>.<8 random characters>.tmp`` (helpers may derive their own temporaries from
it by appending ``.<what>.tmp``), and is renamed onto the target only when complete. An exception
(including the ``KeyboardInterrupt`` of Ctrl-C, and SIGTERM/SIGHUP in the CLI, which raise) removes
it. A process killed outright (``kill -9``) cannot clean up: the next write of the same target
removes such leftovers (see :func:`remove_stale_temps`).

A write that fails because the disk is full (``ENOSPC``, a quota: ``EDQUOT``, or the file-size
limit: ``EFBIG``, "File too large"; PyTorch's writer reports a short write as a ``RuntimeError``
"enforce fail at inline_container") raises :class:`~sparsekit.errors.DiskFullError` naming the
folder and the file; the temporary is removed, and so is every output folder this process created
on the way to it that is still empty (:func:`make_folders`, :func:`remove_created_folders`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from sparsekit.errors import DiskFullError, OutputExistsError, OutputPathError

log = logging.getLogger(__name__)


def ensure_writable_target(path: str | os.PathLike, force: bool = False) -> Path:
    """Check that file ``path`` may be (over)written; create its folder (nothing else).

    The folder (or, while it does not exist yet, its nearest existing ancestor) is proven writable
    by creating and removing a temporary file in it.

    Args:
        path: the file to be written.
        force: allow replacing an existing file.

    Returns:
        The path as a :class:`Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False.
        OutputPathError: ``path`` is a folder or under a file, or its folder cannot be created or
            written (read-only file system, no permission).
    """
    target = Path(path)
    if target.exists() and not target.is_dir() and not force:
        raise OutputExistsError(f"output '{target}' already exists", "pass --force to replace it, or choose another path")
    ensure_writable_file(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        make_folders(parent)
    except OSError as exc:
        raise disk_full_error(exc, parent / target.name) or OutputPathError(f"cannot create folder '{parent}': {exc.strerror}", "choose a writable output location") from exc
    return target


def ensure_writable_folder(path: str | os.PathLike) -> Path:
    """Check, before any work, that files can be written into folder ``path``; create nothing.

    The folder may not exist yet: then its nearest existing ancestor must be a writable folder.

    Args:
        path: a folder the caller will write into (creating it if needed).

    Returns:
        The path as a :class:`Path`.

    Raises:
        OutputPathError: ``path`` or an ancestor is a file, or the folder cannot be written
            (read-only file system, no permission).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"output folder '{folder}' is a file", "choose a folder path, or remove the file")
    _refuse_path_under_file(folder)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    _probe_writable(existing)
    return folder


def ensure_writable_file(path: str | os.PathLike) -> Path:
    """Check, before any work, that file ``path`` can be created or replaced; create nothing.

    Raises:
        OutputPathError: ``path`` is a folder, is under a file, or its folder cannot be written.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"output '{target}' is a folder, not a file", "give a file path, or remove the folder")
    _refuse_path_under_file(target)
    ensure_writable_folder(target.parent)
    return target


def _refuse_path_under_file(path: Path) -> None:
    """Raise when the nearest existing ancestor of ``path`` is not a folder."""
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputPathError(f"output '{path}' is under the file '{ancestor}'", "choose an output location inside a folder")
            return


def _probe_writable(folder: Path) -> None:
    """Create and delete a temporary file in ``folder`` (``os.access`` is wrong for root and ACLs).

    Raises:
        OutputPathError: the file cannot be created.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=f".sparsekit-probe.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"folder '{folder}' is not writable: {exc.strerror}", "choose a writable output location") from exc
    os.close(fd)
    os.unlink(name)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _process_start_time() -> float:
    """When this process started (epoch seconds); the import time where /proc cannot say."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


RUN_STARTED = _process_start_time()
"""Start of this process: a temporary file last modified before it belongs to an earlier run."""


def _temp_pattern(target: Path) -> re.Pattern:
    """The kit's own temporary names for ``target``: ``.<name>.[<pid>.]<8 chars>.tmp[.<what>.tmp]``."""
    return re.compile(rf"\.{re.escape(target.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp(?:\.[\w.-]+\.tmp)?")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(target: str | os.PathLike, pattern: re.Pattern | None = None, folders: bool = False) -> list[Path]:
    """Remove temporaries of ``target`` left by runs that were killed outright (``kill -9``).

    Only entries next to ``target`` whose name is the kit's own temporary naming for it, whose
    recorded process (when the name has one) is gone or is this one, and, for files, that were last
    modified before this process started, are removed; anything else is left alone. A folder that
    records its writer's pid (an export's stage) is removed as soon as that process is gone, so a
    long-lived process (a notebook, the service) also clears what a killed export left.

    Args:
        target: the file about to be written.
        pattern: the temporary naming (group 1: the writer's pid, optional); default: the
            temporary files of :func:`atomic_path`.
        folders: the temporaries are folders (removed with their contents), not files.

    Returns:
        The removed paths.
    """
    target = Path(target)
    pattern = pattern or _temp_pattern(target)
    removed = []
    try:
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        try:
            kind_ok = entry.is_dir(follow_symlinks=False) if folders else entry.is_file(follow_symlinks=False)
            if not kind_ok:
                continue
            owner_known = folders and pid is not None and pid != os.getpid()
            if not owner_known and entry.stat(follow_symlinks=False).st_mtime >= RUN_STARTED:
                continue
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                continue
            if folders:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(Path(entry.path))
        log.warning("removed '%s', left by an earlier run that was killed while writing '%s'", entry.path, target)
    return removed


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Errors of a write that found no room: disk full, quota exceeded, file-size limit reached."""
_TORCH_SHORT_WRITE = ("enforce fail at inline_container", "file write failed", "No space left")
"""What PyTorch's zip writer (``torch.save``) says when a write came back short."""

_CREATED_FOLDERS: set[Path] = set()
"""Output folders this process created (absolute); removed again, when empty, after a full disk."""


def make_folders(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``, remembering each folder it creates (see :func:`remove_created_folders`).

    Raises:
        OSError: a folder cannot be created.
    """
    folder = Path(folder)
    missing = []
    current = folder.absolute()
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    _CREATED_FOLDERS.update(missing)
    return folder


def remove_created_folders(path: str | os.PathLike) -> list[Path]:
    """Remove the empty folders on the way to ``path`` that this process created, deepest first.

    A folder that existed before this process made it, or that holds anything, stays.

    Returns:
        The removed folders.
    """
    target = Path(path).absolute()
    removed = []
    for folder in sorted((f for f in _CREATED_FOLDERS if f == target or f in target.parents), key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            break  # not empty (or not removable): neither are the folders above it
        _CREATED_FOLDERS.discard(folder)
        removed.append(folder)
    return removed


def forget_created_folders() -> None:
    """Start a new command: the folders made so far are no longer this command's to remove."""
    _CREATED_FOLDERS.clear()


def remove_empty_created_folders() -> list[Path]:
    """Remove every folder this process created that is still empty, deepest first (a command
    that fails leaves no empty output folder behind). Folders holding anything stay."""
    removed = []
    for folder in sorted(_CREATED_FOLDERS, key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        _CREATED_FOLDERS.discard(folder)
        removed.append(folder)
    return removed


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception it came from (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it came from) is a write that found no room."""
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if isinstance(e, RuntimeError) and any(text in str(e) for text in _TORCH_SHORT_WRITE):
            return True
    return False


def _size(n: int) -> str:
    """Bytes in words: ``"64 KiB"``, ``"12.5 MiB"``, ``"3.2 GiB"``."""
    if n < 2**20:
        return f"{n / 2**10:.0f} KiB"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def _file_size_limit() -> int | None:
    """This process's file-size limit (``ulimit -f``) in bytes, or None when there is none."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def disk_full_error(exc: BaseException, path: str | os.PathLike) -> DiskFullError | None:
    """The :class:`DiskFullError` for a write of ``path`` that failed with ``exc``; None when
    ``exc`` is not a full disk. Empty output folders this process created for ``path`` are removed."""
    if not is_disk_full(exc):
        return None
    target = Path(path)
    remove_created_folders(target)
    code = next((e.errno for e in exception_chain(exc) if isinstance(e, OSError) and e.errno in FULL_ERRNOS), None)
    limit = _file_size_limit()
    if code is None:  # PyTorch's writer says only that a write came back short
        code = errno.EFBIG if limit is not None else errno.ENOSPC
    existing = target.parent.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = f"; {_size(shutil.disk_usage(existing).free)} free after removing what was started"
    except OSError:
        free = "; what was started is removed"
    if code == errno.EFBIG:
        reached = f"this process's file-size limit of {_size(limit)} was reached" if limit is not None else "the file system's largest file was reached"
        problem = f"cannot write '{target}': File too large ({reached}{free})"
        return DiskFullError(problem, "raise the file-size limit (ulimit -f) or write to another location, then run the command again")
    problem = f"the disk holding '{existing}' is full while writing '{target}' ({os.strerror(code)}{free})"
    return DiskFullError(problem, "free space on that disk, or choose an output on another disk, then run the command again")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and ``path`` is
    untouched. Temporaries of ``path`` left by killed earlier runs are removed first
    (:func:`remove_stale_temps`). A write in the ``with`` body that fails for lack of room (see
    :func:`is_disk_full`) becomes a :class:`DiskFullError`, and the folders this process created
    for ``path`` are removed when empty.

    Raises:
        DiskFullError: the disk filled while writing (or creating) the file.
        OutputPathError: the folder or the temporary file cannot be created (read-only disk).
    """
    target = Path(path)
    remove_stale_temps(target)
    try:
        make_folders(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise disk_full_error(exc, target) or OutputPathError(f"cannot write '{target}': {exc.strerror}", "choose a writable output location with free space") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        full = disk_full_error(exc, target)
        if full is None:
            raise
        raise full from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
