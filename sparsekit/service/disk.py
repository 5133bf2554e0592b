"""Disk space of the service's folders: tell a full disk from a bad model, and keep the service
out of rotation (``/readyz``) until there is room again.

A write that fails for lack of space records how much room it needed; readiness comes back by
itself once that much (plus the configured floor) is free again. Folders are named in messages by
their role ("uploads folder"), never by their path.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
from pathlib import Path

from sparsekit._io import FULL_ERRNOS, exception_chain
from sparsekit._io import is_disk_full as write_found_no_room

log = logging.getLogger(__name__)

MIB = 1 << 20
STORAGE_ERRNOS = FULL_ERRNOS | {errno.EIO, errno.EROFS}
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """True if ``exc`` (or an exception it came from) says the disk or a size limit is full: a file
    write (:func:`sparsekit._io.is_disk_full`) or the job store's SQLite."""
    if write_found_no_room(exc):
        return True
    return any(isinstance(e, sqlite3.Error) and (getattr(e, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_FULL for e in exception_chain(exc))


def storage_errno(exc: BaseException) -> int | None:
    """The errno of the first storage failure (full, read-only, I/O error) in ``exc``'s chain."""
    return next((e.errno for e in exception_chain(exc) if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS), None)


def storage_failure(exc: BaseException | None, detail: str = "") -> dict:
    """The job error for a failure of the service's own disk: it never blames the user's model.

    Args:
        exc: the failure, if any (its errno is named).
        detail: what was found, e.g. free and needed space.
    """
    code = storage_errno(exc) if exc is not None else None
    what = os.strerror(code) if code is not None else "not enough free space"
    return {
        "stage": "storage",
        "message": f"disk full or failing on the build service: {what}" + (f" ({detail})" if detail else ""),
        "hint": "not a problem with the model: submit again once the service's operator has freed disk space",
    }


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on ``folder``'s filesystem."""
    return shutil.disk_usage(folder).free


class DiskGuard:
    """Free space of the service's folders, and what recent disk-full failures needed.

    Args:
        folders: role -> folder, e.g. ``{"uploads folder": state/uploads}``.
        min_free_bytes: the floor each folder's disk must keep.
    """

    def __init__(self, folders: dict[str, Path], min_free_bytes: int) -> None:
        self.folders, self.min_free = folders, min_free_bytes
        self._needs: dict[str, int] = {}
        self._lock = threading.Lock()

    def note_full(self, role: str, need_bytes: int = MIB) -> None:
        """A write in ``role``'s folder failed for lack of space; it needed about ``need_bytes``."""
        with self._lock:
            self._needs[role] = max(self._needs.get(role, 0), need_bytes)
        log.error("disk full in the %s (needed about %.1f MiB)", role, need_bytes / MIB)

    def explains(self, role: str, exc: BaseException) -> bool:
        """True if ``exc`` is (or may well be) the disk of ``role``'s folder being full: a
        disk-full error, or a storage error while less than 1 MiB above the floor is free
        (SQLite reports a full disk as "disk I/O error" when it cannot grow its shared memory)."""
        if is_disk_full(exc):
            return True
        if isinstance(exc, sqlite3.Error) or storage_errno(exc) is not None:
            try:
                return free_bytes(self.folders[role]) < self.min_free + MIB
            except OSError:
                return False
        return False

    def shortfall(self, role: str, extra_bytes: int = 0) -> str | None:
        """Why ``role``'s folder cannot take ``extra_bytes`` more now, or None if it can."""
        try:
            free = free_bytes(self.folders[role])
        except OSError as exc:
            return f"the {role} cannot be read ({exc.strerror})"
        with self._lock:
            recorded = self._needs.get(role, 0)
            need = self.min_free + max(recorded, extra_bytes)
            if free >= self.min_free + recorded:
                self._needs.pop(role, None)  # room again: what failed would fit now
        if free < need:
            return f"disk full: {free / MIB:.1f} MiB free for the {role}, {need / MIB:.1f} MiB needed"
        return None

    def problem(self) -> str | None:
        """The first folder whose disk is (or was just found) full, in words; None when all have room."""
        for role in self.folders:
            reason = self.shortfall(role)
            if reason:
                return reason
        return None
