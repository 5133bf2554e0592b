"""Executors run queued jobs: ``local`` (here: a fresh subprocess per build, one build per slot,
with a wall-clock limit) and ``ray`` (``ray_executor``: tasks routed to a GPU type; one build per
worker process). The service runs unchanged with either: both pull jobs from the job store and
report back to it.

Each slot survives transient trouble (job store unreachable, too many open files) by retrying
with back-off; its health is what ``/healthz`` reports. On :meth:`Executor.stop` (server
shutdown) running builds are stopped and their jobs go back to the queue.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.service.disk import MIB, storage_errno, storage_failure
from sparsekit.service.jobs import CANCELLED, FAILED, SUCCEEDED, Job, JobStore
from sparsekit.service.processes import process_start, stop_groups
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
            "job": job.id, "onnx": job.onnx_path, "spec": job.request["spec"], "bench": job.request.get("bench", False), "store": str(self.settings.store),
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


class LocalExecutor(Executor):
    """``workers`` slots; each runs ``python -m sparsekit.service.worker`` per job with a time limit.

    Workers lead their own process group (signals to the server do not reach them; the executor
    stops them); their pid and start time are recorded in the job store so that a server started
    after a crash can kill them before it queues their job again.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._start_slots(self.settings.workers, "build-slot")

    def _execute(self, job: Job, slot: int, health: SlotHealth) -> None:
        folder = self.settings.results / job.id
        folder.mkdir(parents=True, exist_ok=True)
        req, res = folder / "request.json", folder / "result.json"
        write_json_atomic(req, self._request(job))
        if res.exists():
            res.unlink()
        env = dict(os.environ)
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)] if visible else str(slot)  # one GPU per slot
        limit = self._timeout(job)
        with open(folder / "worker.log", "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-m", "sparsekit.service.worker", str(req), str(res)], stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with self._lock:
            self._procs[job.id] = proc
        try:
            try:  # once: the worker also watches its own deadline and this server
                self.jobs.set_worker(job.id, proc.pid, process_start(proc.pid))
            except (sqlite3.Error, OSError) as exc:
                log.warning("could not record the worker of job %s (%s)", job.id, exc)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        finally:
            with self._lock:
                self._procs.pop(job.id, None)
        if self._stop.is_set() and not (rc == 0 and res.is_file()):
            self._release(job, health)
            return
        current = self._store_call(health, self.jobs.get, job.id)
        if current and current.state == CANCELLED:
            self._cleanup_staging(job.request.get("engine_key", job.key))
            return
        if rc is None:
            self._finish(job, self._timed_out(job), health)
        elif res.is_file():
            self._finish(job, json.loads(res.read_text()), health)
        else:
            how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
            self._finish(job, {"ok": False, "error": {"stage": "worker", "message": f"the build process died ({how}) before reporting", "hint": "submit again; if it repeats, see logs (out of memory?)"}}, health)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    def _interrupt(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        stop_groups(procs, STOP_GRACE_S)


def make_executor(settings: ServiceSettings, jobs: JobStore, on_finish: Callable[[Job, dict], None] = lambda j, r: None) -> Executor:
    """The executor ``settings.executor`` names."""
    if settings.executor == "ray":
        from sparsekit.service.ray_executor import RayExecutor

        return RayExecutor(settings, jobs, on_finish)
    return LocalExecutor(settings, jobs, on_finish)
