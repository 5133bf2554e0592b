"""What a starting server does before it serves: take the state folder, stop the builds a dead
server left running, queue their jobs again, and remove what died half-written.

Order matters: a RUNNING job's worker is killed (and gone) before the job is queued again, so the
same job is never built twice at once.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from pathlib import Path
from typing import IO

from sparsekit.errors import ServiceStateError
from sparsekit.service.jobs import JobStore
from sparsekit.service.processes import kill_group
from sparsekit.service.settings import ServiceSettings

log = logging.getLogger(__name__)

LOCK_NAME = "service.lock"


def lock_state_dir(state_dir: Path) -> IO:
    """Hold the state folder for this process (released when the process ends, however it ends).

    Returns:
        The open lock file; keep it open for the server's lifetime.

    Raises:
        ServiceStateError: another server holds the folder, or it cannot be written.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / LOCK_NAME, "a")
    except OSError as exc:
        raise ServiceStateError(f"cannot use the state folder '{state_dir}': {exc.strerror}", "give --state-dir a writable folder") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise ServiceStateError(f"another 'sparsekit serve' is using the state folder '{state_dir}'", "stop that server, or give this one its own --state-dir") from exc
    return handle


def _remove(paths: list[Path]) -> int:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return len(paths)


def recover_state(settings: ServiceSettings, jobs: JobStore) -> dict[str, int]:
    """Make the state folder consistent after any kind of stop (the caller holds its lock).

    Side effects: kills leftover workers of RUNNING jobs (by pid and start time), re-queues or
    fails those jobs, deletes staging folders (``engines/.build-*``), partial uploads
    (``uploads/.upload-*``) and half-unpacked archives (``uploads/.archive-*``), temp files of
    atomic writes under ``results/``, and uploads (files and model folders) no job refers to.

    Returns:
        Counts of what was done, by kind.
    """
    killed = sum(kill_group(pid, start) for _, pid, start in jobs.running_workers())
    counts = {"workers_killed": killed, **jobs.recover(settings.max_attempts)}
    counts["staging_removed"] = _remove(list(settings.store.glob(".build-*")))
    partial = list(settings.uploads.glob(".upload-*")) + list(settings.uploads.glob(".archive-*")) + list(settings.results.glob("*/.*.tmp"))
    counts["partial_files_removed"] = _remove(partial)
    paths = [Path(p) for p in jobs.onnx_paths()]
    referenced = {p.name for p in paths} | {p.parent.name for p in paths}  # a model folder is named by its parent
    stored = [*settings.uploads.glob("*.onnx"), *settings.uploads.glob("*.model")]
    counts["unreferenced_uploads_removed"] = _remove([p for p in stored if p.name not in referenced])
    if any(counts.values()):
        log.warning("state folder recovered: %s", counts)
    return counts
