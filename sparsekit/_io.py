"""Atomic file writes and output-path guards: never a half-written or clobbered file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from sparsekit.errors import OutputExistsError, OutputPathError


def ensure_writable_target(path: str | os.PathLike, force: bool = False) -> Path:
    """Check that ``path`` may be (over)written and that its folder can be created.

    Args:
        path: file or folder to be written.
        force: allow replacing an existing path.

    Returns:
        The path as a :class:`Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False.
        OutputPathError: the parent folder cannot be created or written.
    """
    target = Path(path)
    if target.exists() and not force:
        raise OutputExistsError(f"output '{target}' already exists", "pass --force to replace it, or choose another path")
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create folder '{parent}': {exc.strerror}", "choose a writable output location") from exc
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"folder '{parent}' is not writable", "choose a writable output location")
    return target


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, target)
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
