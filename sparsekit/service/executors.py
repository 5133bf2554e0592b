"""Executors run queued jobs: ``local`` (here: a fresh subprocess per build, one build per slot,
with a wall-clock limit) and ``ray`` (``ray_executor``: tasks routed to a GPU type; one build per
worker process). The service runs unchanged with either: both pull jobs from the job store and
report back to it (the shared slot loop is ``executor_base.Executor``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.service.executor_base import STOP_GRACE_S, Executor
from sparsekit.service.jobs import CANCELLED, Job, JobStore
from sparsekit.service.processes import process_start, stop_groups
from sparsekit.service.ray_executor import RayExecutor
from sparsekit.service.settings import ServiceSettings
from sparsekit.service.slots import SlotHealth

log = logging.getLogger(__name__)


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
        proc = self._spawn(job, slot, req, res)
        with self._lock:
            self._procs[job.id] = proc
        try:
            rc = self._wait(job, proc)
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
        self._finish(job, self._outcome(job, rc, res), health)

    def _spawn(self, job: Job, slot: int, req: Path, res: Path) -> subprocess.Popen:
        """Start the worker for ``job`` on slot ``slot``'s GPU, in its own process group, its
        output appended to the job's ``worker.log``."""
        env = dict(os.environ)
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)] if visible else str(slot)  # one GPU per slot
        with open(req.parent / "worker.log", "ab") as logf:
            return subprocess.Popen([sys.executable, "-m", "sparsekit.service.worker", str(req), str(res)], stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _wait(self, job: Job, proc: subprocess.Popen) -> int | None:
        """Record the worker in the job store, then wait for it within the job's limit: its exit
        status, or None when it ran out of time (its process group killed)."""
        try:  # once: the worker also watches its own deadline and this server
            self.jobs.set_worker(job.id, proc.pid, process_start(proc.pid))
        except (sqlite3.Error, OSError) as exc:
            log.warning("could not record the worker of job %s (%s)", job.id, exc)
        try:
            return proc.wait(timeout=self._timeout(job))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None

    def _outcome(self, job: Job, rc: int | None, res: Path) -> dict:
        """The job's result from the worker's exit status ``rc`` (None: timed out) and its result file."""
        if rc is None:
            return self._timed_out(job)
        if res.is_file():
            return json.loads(res.read_text())
        how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        return {"ok": False, "error": {"stage": "worker", "message": f"the build process died ({how}) before reporting", "hint": "submit again; if it repeats, see logs (out of memory?)"}}

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    def _interrupt(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        stop_groups(procs, STOP_GRACE_S)


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(settings: ServiceSettings, jobs: JobStore, on_finish: Callable[[Job, dict], None] = lambda j, r: None) -> Executor:
    """The executor ``settings.executor`` names."""
    return EXECUTORS[settings.executor](settings, jobs, on_finish)
