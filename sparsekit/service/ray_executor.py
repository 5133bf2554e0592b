"""The ``ray`` executor: each build is a Ray task routed to a GPU type, one build per worker process.

Ray itself is imported only when this executor starts: it is an optional dependency."""

from __future__ import annotations

import threading

from sparsekit.service.executor_base import Executor
from sparsekit.service.jobs import CANCELLED, Job
from sparsekit.service.slots import SlotHealth
from sparsekit.service.worker import run_request
from sparsekit._lazy import lazy_import

ray = lazy_import("ray")


class RayExecutor(Executor):
    """Routes each build to a Ray worker with the requested accelerator type.

    Each build is a ``@ray.remote(max_calls=1)`` task: one build per worker process (GPU builds
    time tactics; a process per build keeps CUDA state clean). ``num_gpus`` is 1 when an
    accelerator type is configured, else 0 (CPU builds, e.g. the onnxruntime backend). Tasks
    share the fate of this driver: Ray kills them when the service process dies.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._refs: dict[str, object] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        if not ray.is_initialized():
            host = (self.settings.ray_address or "127.0.0.1").split(":")[0]
            # A local or loopback cluster: this driver must register on loopback too (Ray would pick the host's IP).
            local = {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
            ray.init(address=self.settings.ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **local)
        options = {"max_calls": 1, "num_cpus": 1}
        if self.settings.ray_accelerator_type:
            options.update(num_gpus=1, accelerator_type=self.settings.ray_accelerator_type)
        self._task = ray.remote(**options)(run_request)
        self._start_slots(max(1, self.settings.workers), "ray-dispatch")

    def _execute(self, job: Job, slot: int, health: SlotHealth) -> None:
        ref = self._task.remote(self._request(job))
        with self._lock:
            self._refs[job.id] = ref
        try:
            result = ray.get(ref, timeout=self._timeout(job))
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            result = self._timed_out(job)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as exc:
            result = {"ok": False, "error": {"stage": "worker", "message": f"Ray task failed: {type(exc).__name__}", "hint": "see the Ray worker logs"}}
        finally:
            with self._lock:
                self._refs.pop(job.id, None)
        if self._stop.is_set() and not result.get("ok"):
            self._release(job, health)
            return
        current = self._store_call(health, self.jobs.get, job.id)
        if current and current.state == CANCELLED:
            return
        self._finish(job, result, health)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            ref = self._refs.get(job_id)
        if ref is not None:
            ray.cancel(ref, force=True)

    def _interrupt(self) -> None:
        with self._lock:
            refs = list(self._refs.values())
        for ref in refs:
            ray.cancel(ref, force=True)
