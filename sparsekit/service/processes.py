"""Build processes by identity: a pid plus its start time, so a pid the kernel has since given to
another program is never signalled. Workers lead their own process group (``start_new_session``),
so signalling the group reaches anything a build started. Linux ``/proc``; elsewhere a process's
identity cannot be checked and it is left alone (with a warning)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (field 3 onwards), or None."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot, or None (no such process, or no /proc)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_running(pid: int, start: int | None) -> bool:
    """True while the process ``pid`` that started at ``start`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19 or fields[0] == "Z":
        return False
    return start is not None and int(fields[19]) == start


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for stat in _PROC.glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def kill_group(pid: int, start: int | None, timeout: float = 10.0) -> bool:
    """SIGKILL the process group led by ``pid`` if that process is still the one that started at
    ``start``, and wait until every process of the group is gone.

    Returns:
        True if a live process was killed; False if it was already gone or cannot be identified.
    """
    if start is None:
        if _PROC.is_dir() and process_start(pid) is None:
            return False
        log.warning("cannot verify build process %d (no start time recorded); leaving it alone", pid)
        return False
    if not is_running(pid, start):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    end = time.monotonic() + timeout
    while group_members(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return True


def stop_groups(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM the process groups of running children, then SIGKILL those still there after
    ``grace`` seconds, and wait until they exit."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass  # exited between poll and kill
        end = time.monotonic() + grace
        while any(proc.poll() is None for proc in procs) and time.monotonic() < end:
            time.sleep(0.02)
