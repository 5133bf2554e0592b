"""The one state object of a running service (:class:`ServiceState`): settings, job store,
executor, token checker, counters, disk guard and upload gate, opened once by
:func:`open_state` and handed to every route through the :func:`get_state` dependency."""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from typing import IO

from fastapi import HTTPException, Request

from sparsekit.backends.registry import backend_names, get_backend
from sparsekit.errors import ServiceStateError, SparsekitError
from sparsekit.service.auth import TokenChecker
from sparsekit.service.disk import MIB, DiskGuard
from sparsekit.service.executor_base import Executor
from sparsekit.service.executors import make_executor
from sparsekit.service.jobs import Job, JobStore
from sparsekit.service.metrics import Metrics
from sparsekit.service.public import PathScrubber
from sparsekit.service.recovery import lock_state_dir, recover_state
from sparsekit.service.settings import ServiceSettings
from sparsekit.service.uploads import UPLOADS_ROLE, UploadGate

STATE_ROLE, STORE_ROLE = "state folder", "engine store"


@dataclass
class ServiceState:
    """What the routes share. ``targets`` lists every backend (available or not, with the reason);
    ``available`` maps the names of those this service builds for to their entries;
    ``state_lock`` holds the state folder until the server stops."""

    settings: ServiceSettings
    jobs: JobStore
    executor: Executor
    tokens: TokenChecker
    metrics: Metrics
    scrub: PathScrubber
    disk: DiskGuard
    gate: UploadGate
    targets: list[dict]
    available: dict[str, dict]
    state_lock: IO
    recovered: dict[str, int]

    def state_disk_full(self, exc: BaseException) -> str | None:
        """The disk-full problem when ``exc`` comes from the state folder's full disk (noted, so
        readiness turns off), else None."""
        if not self.disk.explains(STATE_ROLE, exc):
            return None
        self.disk.note_full(STATE_ROLE)
        return self.disk.problem() or "disk full in the state folder"

    def store_failure(self, exc: BaseException) -> HTTPException:
        """The answer to a job-store error: 507 when the state folder's disk is full, else 503
        (retry shortly), without the server's paths."""
        full = self.state_disk_full(exc)
        if full is not None:
            return HTTPException(507, full)
        return HTTPException(503, self.scrub(f"the job store is unavailable ({exc}); retry shortly"), headers={"Retry-After": "5"})


def get_state(request: Request) -> ServiceState:
    """FastAPI dependency: the service state of the app serving ``request``."""
    return request.app.state.service


def backend_targets() -> list[dict]:
    """The backends this service can build for, with the facts engines are tied to."""
    out = []
    for name in backend_names("engine"):
        try:
            env = get_backend(name).environment()
        except SparsekitError as exc:
            out.append({"backend": name, "available": False, "reason": exc.problem})
            continue
        out.append({"backend": name, "available": True, "environment": env})
    return out


def note_store_full(disk: DiskGuard, job: Job, result: dict) -> None:
    """Executor callback: a worker that found the engine store's disk full turns readiness off
    until about twice the job's upload is free there."""
    if (result.get("error") or {}).get("stage") == "storage":
        disk.note_full(STORE_ROLE, 2 * int(job.request.get("onnx_bytes") or 0))


def open_state(settings: ServiceSettings) -> ServiceState:
    """Lock and recover the state folder, open the job store, make the executor (not started).

    Raises:
        ServiceStateError: another server holds the state folder, or its job database cannot be
            opened.
    """
    state_lock = lock_state_dir(settings.state_dir)
    try:
        for folder in (settings.uploads, settings.store, settings.results):
            folder.mkdir(parents=True, exist_ok=True)
        jobs = JobStore(settings.db_path)
        recovered = recover_state(settings, jobs)
    except (OSError, sqlite3.Error) as exc:
        state_lock.close()
        raise ServiceStateError(f"cannot open the service state in '{settings.state_dir}': {exc}", "check that folder's disk and permissions") from exc
    disk = DiskGuard({STATE_ROLE: settings.state_dir, UPLOADS_ROLE: settings.uploads, STORE_ROLE: settings.store}, settings.min_free_mib * MIB)
    executor = make_executor(settings, jobs, functools.partial(note_store_full, disk))
    targets = backend_targets()
    return ServiceState(
        settings=settings, jobs=jobs, executor=executor, tokens=TokenChecker(settings), metrics=Metrics(), scrub=PathScrubber(settings.state_dir), disk=disk,
        gate=UploadGate(settings.max_concurrent_uploads), targets=targets, available={t["backend"]: t for t in targets if t["available"]}, state_lock=state_lock, recovered=recovered,
    )
