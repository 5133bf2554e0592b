"""Executors run queued jobs: ``local`` (a fresh subprocess per build, one build per slot, with a
wall-clock limit) and ``ray`` (tasks routed to a GPU type; one build per worker process).
The service runs unchanged with either: both pull jobs from the job store and report back to it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from sparsekit.service.jobs import CANCELLED, FAILED, SUCCEEDED, JobStore
from sparsekit.service.settings import ServiceSettings

log = logging.getLogger(__name__)


class Executor:
    """Base: ``start()`` begins pulling jobs; ``cancel(job_id)`` stops a running one; ``stop()``."""

    def __init__(self, settings: ServiceSettings, jobs: JobStore, on_finish: Callable[[str, dict], None] = lambda j, r: None) -> None:
        self.settings, self.jobs, self.on_finish = settings, jobs, on_finish
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def notify(self) -> None:
        """A job was queued: wake an idle slot."""
        self._wake.set()

    def alive(self) -> bool:
        return self.settings.workers == 0 or any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)

    def _next_job(self):
        """Claim the next queued job, or wait briefly (woken early by :meth:`notify`) and return None."""
        job = self.jobs.claim_next()
        if job is None:
            self._wake.wait(0.5)
            self._wake.clear()
        return job

    def _request(self, job) -> dict:
        return {"job": job.id, "onnx": job.onnx_path, "spec": job.request["spec"], "bench": job.request.get("bench", False), "store": str(self.settings.store)}

    def _finish(self, job, result: dict) -> None:
        if result.get("ok"):
            self.jobs.finish(job.id, SUCCEEDED, result=result)
        else:
            self._cleanup_staging(job.request.get("engine_key", job.key))
            self.jobs.finish(job.id, FAILED, error=result.get("error"))
        self.on_finish(job.id, result)

    def _cleanup_staging(self, key: str) -> None:
        """Remove what a dead worker left in the store's staging area (never a published engine)."""
        root = self.settings.store
        if root.is_dir():
            for p in root.glob(f".build-{key[:12]}-*"):
                shutil.rmtree(p, ignore_errors=True)

    def start(self) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError


class LocalExecutor(Executor):
    """``workers`` slots; each runs ``python -m sparsekit.service.worker`` per job with a time limit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for slot in range(self.settings.workers):
            t = threading.Thread(target=self._loop, args=(slot,), name=f"build-slot-{slot}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, slot: int) -> None:
        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                continue
            try:
                self._run(job, slot)
            except Exception as exc:  # the slot must survive anything a job does
                log.exception("job %s crashed its slot", job.id)
                self.jobs.finish(job.id, FAILED, error={"stage": "executor", "message": f"{type(exc).__name__}: {exc}", "hint": "see the service log"})

    def _run(self, job, slot: int) -> None:
        folder = self.settings.results / job.id
        folder.mkdir(parents=True, exist_ok=True)
        req, res = folder / "request.json", folder / "result.json"
        req.write_text(json.dumps(self._request(job)))
        if res.exists():
            res.unlink()
        env = dict(os.environ)
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)] if visible else str(slot)  # one GPU per slot
        with open(folder / "worker.log", "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-m", "sparsekit.service.worker", str(req), str(res)], stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            with self._lock:
                self._procs[job.id] = proc
            self.jobs.set_worker(job.id, proc.pid)
            try:
                rc = proc.wait(timeout=self.settings.job_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
            finally:
                with self._lock:
                    self._procs.pop(job.id, None)
        current = self.jobs.get(job.id)
        if current and current.state == CANCELLED:
            self._cleanup_staging(job.request.get("engine_key", job.key))
            return
        if rc is None:
            self._finish(job, {"ok": False, "error": {"stage": "timeout", "message": f"the build exceeded {self.settings.job_timeout_s:.0f} s", "hint": "raise --job-timeout or lower the builder optimization level"}})
        elif res.is_file():
            self._finish(job, json.loads(res.read_text()))
        else:
            how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
            self._finish(job, {"ok": False, "error": {"stage": "worker", "message": f"the build process died ({how}) before reporting", "hint": "submit again; if it repeats, see logs (out of memory?)"}})

    def cancel(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


class RayExecutor(Executor):
    """Routes each build to a Ray worker with the requested accelerator type.

    Each build is a ``@ray.remote(max_calls=1)`` task: one build per worker process (GPU builds
    time tactics; a process per build keeps CUDA state clean). ``num_gpus`` is 1 when an
    accelerator type is configured, else 0 (CPU builds, e.g. the onnxruntime backend).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._refs: dict[str, object] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        import ray

        from sparsekit.service.worker import run_request

        if not ray.is_initialized():
            host = (self.settings.ray_address or "127.0.0.1").split(":")[0]
            # A local or loopback cluster: this driver must register on loopback too (Ray would pick the host's IP).
            local = {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
            ray.init(address=self.settings.ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **local)
        options = {"max_calls": 1, "num_cpus": 1}
        if self.settings.ray_accelerator_type:
            options.update(num_gpus=1, accelerator_type=self.settings.ray_accelerator_type)
        self._task = ray.remote(**options)(run_request)
        for slot in range(max(1, self.settings.workers)):
            t = threading.Thread(target=self._loop, name=f"ray-dispatch-{slot}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self) -> None:
        import ray

        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                continue
            ref = self._task.remote(self._request(job))
            with self._lock:
                self._refs[job.id] = ref
            try:
                result = ray.get(ref, timeout=self.settings.job_timeout_s)
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                result = {"ok": False, "error": {"stage": "timeout", "message": f"the build exceeded {self.settings.job_timeout_s:.0f} s", "hint": "raise --job-timeout"}}
            except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as exc:
                result = {"ok": False, "error": {"stage": "worker", "message": f"Ray task failed: {type(exc).__name__}", "hint": "see the Ray worker logs"}}
            finally:
                with self._lock:
                    self._refs.pop(job.id, None)
            current = self.jobs.get(job.id)
            if current and current.state == CANCELLED:
                continue
            self._finish(job, result)

    def cancel(self, job_id: str) -> None:
        import ray

        with self._lock:
            ref = self._refs.get(job_id)
        if ref is not None:
            ray.cancel(ref, force=True)

    def stop(self) -> None:
        super().stop()


def make_executor(settings: ServiceSettings, jobs: JobStore, on_finish=lambda j, r: None) -> Executor:
    return (RayExecutor if settings.executor == "ray" else LocalExecutor)(settings, jobs, on_finish)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def results_dir(settings: ServiceSettings, job_id: str) -> Path:
    return settings.results / job_id
