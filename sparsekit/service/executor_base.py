"""The executor base: build slots that pull jobs from the job store, survive transient trouble
(job store unreachable, too many open files) by retrying with back-off, and report their health
for ``/healthz``. Subclasses (``executors.LocalExecutor``, ``ray_executor.RayExecutor``) run one
claimed job each; on :meth:`Executor.stop` (server shutdown) running builds are stopped and their
jobs go back to the queue.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from typing import Callable

from sparsekit.service.disk import MIB, storage_errno, storage_failure
from sparsekit.service.jobs import FAILED, SUCCEEDED, Job, JobStore
from sparsekit.service.settings import ServiceSettings
from sparsekit.service.slots import Backoff, SlotHealth

log = logging.getLogger(__name__)

SPAWN_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})
STOP_GRACE_S = 5.0  # a worker gets this long to exit on SIGTERM before SIGKILL
WORKER_DEADLINE_GRACE_S = 30.0  # a worker's own deadline lies this far past the executor's limit


class Executor:
    """Base: ``start()`` begins pulling jobs; ``cancel(job_id)`` stops a running one; ``stop()``.

    Args:
        settings: the service settings (limits, folders, slots).
        jobs: the job store.
        on_finish: called with ``(job, result)`` after a job reached a terminal state.
    """

    def __init__(self, settings: ServiceSettings, jobs: JobStore, on_finish: Callable[[Job, dict], None] = lambda j, r: None) -> None:
        self.settings, self.jobs, self.on_finish = settings, jobs, on_finish
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.slots: list[SlotHealth] = []

    def notify(self) -> None:
        """A job was queued: wake an idle slot."""
        self._wake.set()

    def alive(self) -> bool:
        return self.settings.workers == 0 or any(s.thread is not None and s.thread.is_alive() for s in self.slots)

    def health(self) -> list[str]:
        """Problems of the build slots (empty when all are healthy)."""
        stopping = self._stop.is_set()
        return [p for s in self.slots if (p := s.problem(self.settings.unhealthy_after_s, stopping))]

    def stop(self) -> None:
        """Stop pulling jobs, stop running builds (their jobs return to the queue), join the slots."""
        self._stop.set()
        self._wake.set()
        self._interrupt()
        for s in self.slots:
            if s.thread is not None:
                s.thread.join(timeout=3 * STOP_GRACE_S)

    def start(self) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Stop every running build (subclasses)."""

    def _execute(self, job: Job, slot: int, health: SlotHealth) -> None:
        """Run one claimed job to a terminal state, or release it if the service stops (subclasses)."""
        raise NotImplementedError

    def _start_slots(self, count: int, prefix: str) -> None:
        for i in range(count):
            health = SlotHealth(f"build slot {i}")
            health.thread = threading.Thread(target=self._slot_main, args=(i, health), name=f"{prefix}-{i}", daemon=True)
            self.slots.append(health)
            health.thread.start()

    def _slot_main(self, slot: int, health: SlotHealth) -> None:
        try:
            self._serve_slot(slot, health)
        except BaseException as exc:  # recorded for /healthz, then the thread ends
            health.died(exc)
            log.critical("%s stopped: %s", health.name, exc, exc_info=True)
            raise

    def _serve_slot(self, slot: int, health: SlotHealth) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                job = self.jobs.claim_next()
            except (sqlite3.Error, OSError) as exc:  # store unreachable or locked, too many open files
                self._pause(health, backoff, "cannot claim a job", exc)
                continue
            health.succeeded()
            backoff.reset()
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._execute(job, slot, health)
            except OSError as exc:
                if exc.errno in SPAWN_RETRY_ERRNOS:  # the machine is short of something, not the job
                    self._store_call(health, self.jobs.release, job.id)
                    self._pause(health, backoff, f"cannot start the build of job {job.id}", exc)
                else:
                    self._fail(job, health, exc)
            except Exception as exc:  # the slot must survive anything a job does
                self._fail(job, health, exc)

    def _fail(self, job: Job, health: SlotHealth, exc: Exception) -> None:
        log.exception("job %s failed in its slot", job.id)
        if storage_errno(exc) is not None:
            self._finish(job, {"ok": False, "error": storage_failure(exc)}, health)
        else:
            self._finish(job, {"ok": False, "error": {"stage": "executor", "message": f"{type(exc).__name__}: {exc}", "hint": "see the service log"}}, health)

    def _pause(self, health: SlotHealth, backoff: Backoff, what: str, exc: BaseException) -> None:
        health.failed(exc)
        delay = backoff.next()
        log.warning("%s %s (%s: %s); retrying in %.1f s", health.name, what, type(exc).__name__, exc, delay)
        self._stop.wait(delay)

    def _store_call(self, health: SlotHealth, fn: Callable, *args, **kwargs):
        """Call the job store, retrying transient errors with back-off until it works or the
        service stops (then the next start recovers the job from what the store holds)."""
        backoff = Backoff()
        while True:
            try:
                out = fn(*args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                if self._stop.is_set():
                    log.error("job store call %s failed while stopping (%s); the next start recovers the job", fn.__name__, exc)
                    return None
                self._pause(health, backoff, f"cannot reach the job store ({fn.__name__})", exc)
                continue
            health.succeeded()
            return out

    def _timeout(self, job: Job) -> float:
        """The job's wall-clock limit: what it asked for, never more than the service allows."""
        asked = job.request.get("timeout_s")
        return min(float(asked), self.settings.job_timeout_s) if asked else self.settings.job_timeout_s

    def _request(self, job: Job) -> dict:
        return {
            "job": job.id, "onnx": job.onnx_path, "spec": job.request["spec"], "bench": job.request.get("bench", False), "archive": job.request.get("archive", False), "store": str(self.settings.store),
            "parent_pid": os.getpid(), "deadline": time.time() + self._timeout(job) + WORKER_DEADLINE_GRACE_S,
            "need_bytes": self.settings.min_free_mib * MIB + 2 * int(job.request.get("onnx_bytes") or 0),
        }

    def _timed_out(self, job: Job) -> dict:
        limit = self._timeout(job)
        return {"ok": False, "error": {"stage": "timeout", "message": f"the build exceeded its {limit:.0f} s limit (ONNX checks, analysis and build included)", "hint": "ask for a longer limit (timeout_s, up to the service's --job-timeout) or lower the builder optimization level"}}

    def _finish(self, job: Job, result: dict, health: SlotHealth) -> None:
        if result.get("ok"):
            self._store_call(health, self.jobs.finish, job.id, SUCCEEDED, result=result)
        else:
            self._cleanup_staging(job.request.get("engine_key", job.key))
            self._store_call(health, self.jobs.finish, job.id, FAILED, error=result.get("error"))
        self.on_finish(job, result)

    def _release(self, job: Job, health: SlotHealth) -> None:
        """The service is stopping: the interrupted job goes back to the queue."""
        self._cleanup_staging(job.request.get("engine_key", job.key))
        if self._store_call(health, self.jobs.release, job.id):
            log.warning("job %s interrupted by shutdown; queued again", job.id)

    def _cleanup_staging(self, key: str) -> None:
        """Remove what a dead worker left in the store's staging area (never a published engine)."""
        root = self.settings.store
        if root.is_dir():
            for p in root.glob(f".build-{key[:12]}-*"):
                shutil.rmtree(p, ignore_errors=True)
