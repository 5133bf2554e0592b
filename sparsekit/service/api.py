"""The engine build service's HTTP API (FastAPI). The ONNX is the raw request body, streamed to
disk with a byte counter (413 past the limit, 408 when it stalls, 503 when too many arrive at
once, 507 when the disk is full; nothing kept in any case); the build spec travels in the
``X-Build-Spec`` header as JSON and a refusal names the field and its range. The API never parses
ONNX or runs builds: workers do. Answers never contain the server's absolute paths.

A build (its record, logs and artifacts) is visible only to the bearer token that submitted it
(others get 404, as for a build that does not exist); admin tokens see every build. Without auth
(loopback only) there is one caller, who sees everything."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from sparsekit.service.disk import MIB, DiskGuard
from sparsekit.service.jobs import CANCELLED, QUEUED, RUNNING, TERMINAL, JobStore
from sparsekit.service.public import PathScrubber, public_job
from sparsekit.service.settings import ServiceSettings
from sparsekit.service.uploads import UPLOADS_ROLE, UploadGate, UploadRefused, check_declared_size, receive_upload

log = logging.getLogger(__name__)

STATE_ROLE, STORE_ROLE = "state folder", "engine store"
REJECT_REASONS = ("size", "empty", "timeout", "busy", "disconnected", "disk_full", "storage")
MIN_BUILD_TIMEOUT_S = 1.0
ARTIFACTS = {"engine": None, "report.json": "report.json", "report.md": "report.md", "metadata.json": "metadata.json", "build.log": "build.log", "benchmark.json": None}


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``owner`` is the identity stored on the jobs it submits (None without
    auth); ``admin`` callers see every job."""

    owner: str | None
    admin: bool

    def sees(self, job) -> bool:
        """True when this caller may see ``job`` (its own, or any for an admin)."""
        return self.admin or (job.owner is not None and job.owner == self.owner)


def token_owner(token: str) -> str:
    """The identity a token's jobs are stored under: its SHA-256 (the token cannot be recovered)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Metrics:
    """In-process counters; job counts come from the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache_hits = 0
        self.joins = 0
        self.submits = 0
        self.rejected_uploads: Counter[str] = Counter()

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected_uploads[reason] += 1


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    """The answer to an upload whose body was not (all) read: the connection closes after it, so a
    client that keeps sending holds nothing."""
    return HTTPException(status, detail, headers={**(headers or {}), "Connection": "close"})


def targets(settings: ServiceSettings) -> list[dict]:
    """The backends this service can build for, with the facts engines are tied to."""
    from sparsekit.backends.registry import backend_names, get_backend
    from sparsekit.errors import SparsekitError

    out = []
    for name in backend_names():
        try:
            env = get_backend(name).environment()
        except SparsekitError as exc:
            out.append({"backend": name, "available": False, "reason": exc.problem})
            continue
        out.append({"backend": name, "available": True, "environment": env})
    return out


def create_app(settings: ServiceSettings, start_executor: bool = True):
    """Build the FastAPI app: state-folder lock and recovery, executor start, routes.

    Raises:
        ServiceStateError: another server holds the state folder, or its job database cannot be
            opened.
    """
    from sparsekit.backends.store import engine_key, target_of
    from sparsekit.errors import BuildSpecError, ServiceStateError
    from sparsekit.recipe.runner import kit_version
    from sparsekit.service.executors import make_executor
    from sparsekit.service.recovery import lock_state_dir, recover_state
    from sparsekit.service.validation import build_spec_from

    state_lock = lock_state_dir(settings.state_dir)
    try:
        for folder in (settings.uploads, settings.store, settings.results):
            folder.mkdir(parents=True, exist_ok=True)
        jobs = JobStore(settings.db_path)
        recovered = recover_state(settings, jobs)
    except (OSError, sqlite3.Error) as exc:
        state_lock.close()
        raise ServiceStateError(f"cannot open the service state in '{settings.state_dir}': {exc}", "check that folder's disk and permissions") from exc
    metrics = Metrics()
    scrub = PathScrubber(settings.state_dir)
    disk = DiskGuard({STATE_ROLE: settings.state_dir, UPLOADS_ROLE: settings.uploads, STORE_ROLE: settings.store}, settings.min_free_mib * MIB)
    gate = UploadGate(settings.max_concurrent_uploads)

    def on_finish(job, result: dict) -> None:
        if (result.get("error") or {}).get("stage") == "storage":  # the worker found the store's disk full
            disk.note_full(STORE_ROLE, 2 * int(job.request.get("onnx_bytes") or 0))

    executor = make_executor(settings, jobs, on_finish)
    target_list = targets(settings)
    available = {t["backend"]: t for t in target_list if t["available"]}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if start_executor:
            executor.start()
        try:
            yield
        finally:
            executor.stop()
            state_lock.close()

    app = FastAPI(title="sparsekit engine build service", version=kit_version(), lifespan=lifespan, description="Builds dense and 2:4-sparse engines from ONNX, caches them by content, and returns them with their sparse-kernel report.")
    app.state.jobs, app.state.executor, app.state.metrics, app.state.settings, app.state.disk = jobs, executor, metrics, settings, disk
    app.state.recovered = recovered

    @app.exception_handler(sqlite3.Error)
    async def job_store_error(_request: Request, exc: sqlite3.Error):
        if disk.explains(STATE_ROLE, exc):
            disk.note_full(STATE_ROLE)
            return JSONResponse({"detail": disk.problem() or "disk full in the state folder"}, status_code=507)
        return JSONResponse({"detail": scrub(f"the job store is unavailable ({exc}); retry shortly")}, status_code=503, headers={"Retry-After": "5"})

    accepted = [(t, False) for t in settings.tokens] + [(t, True) for t in settings.admin_tokens]

    def auth(authorization: str | None = Header(default=None)) -> Caller:
        if not settings.auth_enabled:
            return Caller(None, admin=True)
        scheme, _, token = (authorization or "").partition(" ")
        ok = admin = False
        for t, is_admin in accepted:  # compare with every token, in constant time each
            match = secrets.compare_digest(token.encode(), t.encode())
            ok |= match
            admin |= match and is_admin
        if scheme.lower() != "bearer" or not ok:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return Caller(token_owner(token), admin)

    def job_or_404(job_id: str, caller: Caller):
        """The job, if it exists and ``caller`` may see it; 404 alike otherwise."""
        job = jobs.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
        if job is None or not caller.sees(job):
            raise HTTPException(404, f"no build {job_id}")
        return job

    @app.get("/healthz")
    def healthz():
        problems = executor.health()
        if problems:
            return JSONResponse({"status": "failing", "problems": scrub.value(problems)}, status_code=503)
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            jobs.counts()
        except sqlite3.Error as exc:  # database unreadable
            if disk.explains(STATE_ROLE, exc):
                disk.note_full(STATE_ROLE)
                return JSONResponse({"ready": False, "reason": disk.problem() or "disk full in the state folder"}, status_code=503)
            return JSONResponse({"ready": False, "reason": scrub(f"job store: {exc}")}, status_code=503)
        if not executor.alive():
            return JSONResponse({"ready": False, "reason": "executor stopped"}, status_code=503)
        problems = executor.health()
        if problems:
            return JSONResponse({"ready": False, "reason": scrub(problems[0])}, status_code=503)
        full = disk.problem()
        if full:
            return JSONResponse({"ready": False, "reason": full}, status_code=503)
        return {"ready": True}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        counts = jobs.counts()
        seconds = jobs.build_seconds()
        lines = ["# HELP sparsekit_builds Builds by state.", "# TYPE sparsekit_builds gauge"]
        lines += [f'sparsekit_builds{{state="{s}"}} {counts.get(s, 0)}' for s in (QUEUED, RUNNING, *TERMINAL)]
        lines += ["# HELP sparsekit_queue_depth Builds waiting.", "# TYPE sparsekit_queue_depth gauge", f"sparsekit_queue_depth {counts.get(QUEUED, 0)}"]
        lines += ["# HELP sparsekit_build_seconds Wall time of succeeded builds.", "# TYPE sparsekit_build_seconds summary", f"sparsekit_build_seconds_sum {sum(seconds):.3f}", f"sparsekit_build_seconds_count {len(seconds)}"]
        lines += ["# HELP sparsekit_cache_hits_total Submissions served from the cache.", "# TYPE sparsekit_cache_hits_total counter", f"sparsekit_cache_hits_total {metrics.cache_hits}"]
        lines += ["# HELP sparsekit_joins_total Submissions that joined an identical build in flight.", "# TYPE sparsekit_joins_total counter", f"sparsekit_joins_total {metrics.joins}"]
        lines += ["# HELP sparsekit_rejected_uploads_total Uploads refused, by reason.", "# TYPE sparsekit_rejected_uploads_total counter"]
        lines += [f'sparsekit_rejected_uploads_total{{reason="{r}"}} {metrics.rejected_uploads[r]}' for r in REJECT_REASONS]
        lines += ["# HELP sparsekit_uploads_in_progress Uploads being received.", "# TYPE sparsekit_uploads_in_progress gauge", f"sparsekit_uploads_in_progress {gate.active}"]
        lines += ["# HELP sparsekit_build_slots_unhealthy Build slots failing or stopped.", "# TYPE sparsekit_build_slots_unhealthy gauge", f"sparsekit_build_slots_unhealthy {len(executor.health())}"]
        return "\n".join(lines) + "\n"

    @app.get("/v1/targets", dependencies=[Depends(auth)])
    def list_targets():
        return {"targets": scrub.value(target_list)}

    @app.post("/v1/builds", status_code=202)
    async def submit(request: Request, x_build_spec: str = Header(..., description="build spec JSON (see BuildSpec)"), bench: bool = False, timeout_s: float | None = None, caller: Caller = Depends(auth)):
        try:
            spec = build_spec_from(x_build_spec)
        except BuildSpecError as exc:
            raise refusal(422, str(exc)) from exc
        if spec.backend not in available:
            raise refusal(422, f"backend '{spec.backend}' is not available on this service; see /v1/targets")
        if timeout_s is not None and not MIN_BUILD_TIMEOUT_S <= timeout_s <= settings.job_timeout_s:
            raise refusal(422, f"timeout_s = {timeout_s:g} is not allowed (allowed: a number from {MIN_BUILD_TIMEOUT_S:g} to {settings.job_timeout_s:g} s, this service's --job-timeout)")
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        try:
            check_declared_size(declared, settings.max_upload_mib * MIB, disk)
            with gate.enter():
                upload = await receive_upload(request, settings.uploads, settings.max_upload_mib * MIB, settings.upload_idle_timeout_s, settings.upload_timeout_s, disk, declared)
        except UploadRefused as exc:
            metrics.reject(exc.reason)
            raise refusal(exc.status, exc.detail, exc.headers) from exc
        sha = upload.sha256
        final = settings.uploads / f"{sha}.onnx"  # safe name: content address, never the client's
        target = target_of(available[spec.backend]["environment"])
        ekey = engine_key(hashlib.sha256(sha.encode()).hexdigest(), spec, target, kit_version())
        key = hashlib.sha256(f"{ekey}+bench".encode()).hexdigest() if bench else ekey  # a benchmarked build is a different product
        record = {"spec": spec.model_dump(mode="json"), "bench": bench, "target": target, "onnx_sha256": sha, "onnx_bytes": upload.size, "engine_key": ekey}
        if timeout_s is not None:
            record["timeout_s"] = timeout_s
        existed = final.exists()  # no await from here to the job: no other request interleaves
        try:
            os.replace(upload.path, final)
            job, how = jobs.submit(key, record, str(final), owner=caller.owner)
        except (OSError, sqlite3.Error) as exc:  # never an upload without a job
            upload.path.unlink(missing_ok=True)
            if not existed:
                final.unlink(missing_ok=True)
            if disk.explains(STATE_ROLE, exc):
                disk.note_full(STATE_ROLE)
                metrics.reject("disk_full")
                raise HTTPException(507, disk.problem() or "disk full in the state folder") from exc
            metrics.reject("storage")
            raise HTTPException(503, scrub(f"the job store is unavailable ({exc}); retry shortly"), headers={"Retry-After": "5"}) from exc
        metrics.bump("submits")
        if how == "cached":
            metrics.bump("cache_hits")
            return JSONResponse({"build": public_job(job, scrub), "how": how}, status_code=200)
        if how == "joined":
            metrics.bump("joins")
        executor.notify()
        return {"build": public_job(job, scrub), "how": how}

    @app.get("/v1/builds")
    def list_builds(limit: int = 100, caller: Caller = Depends(auth)):
        return {"builds": [public_job(j, scrub) for j in jobs.list(min(max(limit, 1), 1000), owner=caller.owner, everyone=caller.admin)]}

    @app.get("/v1/builds/{job_id}")
    def get_build(job_id: str, caller: Caller = Depends(auth)):
        return {"build": public_job(job_or_404(job_id, caller), scrub)}

    @app.get("/v1/builds/{job_id}/logs", response_class=PlainTextResponse)
    def get_logs(job_id: str, caller: Caller = Depends(auth)):
        job = job_or_404(job_id, caller)
        parts = []
        worker_log = settings.results / job.id / "worker.log"
        if worker_log.is_file():
            parts.append(worker_log.read_text(errors="replace"))
        if job.result and job.result.get("folder"):
            build_log = Path(job.result["folder"]) / "build.log"
            if build_log.is_file():
                parts.append(build_log.read_text(errors="replace"))
        return scrub("\n".join(parts))

    @app.get("/v1/builds/{job_id}/artifacts/{name}")
    def get_artifact(job_id: str, name: str, caller: Caller = Depends(auth)):
        job = job_or_404(job_id, caller)
        if name not in ARTIFACTS:
            raise HTTPException(404, f"unknown artifact '{name}'; one of {sorted(ARTIFACTS)}")
        if job.state != "SUCCEEDED":
            raise HTTPException(409, f"build is {job.state}; artifacts exist only for SUCCEEDED builds")
        folder = Path(job.result["folder"])
        if name == "benchmark.json":
            if not job.result.get("bench"):
                raise HTTPException(404, "this build was submitted without a benchmark (bench=true)")
            return JSONResponse(scrub.value(job.result["bench"]))
        path = folder / (job.result["artifact"] if name == "engine" else ARTIFACTS[name])
        if not path.is_file():
            raise HTTPException(410, f"artifact '{name}' is no longer in the store")
        headers = {}
        if name == "engine":
            meta = json.loads((folder / "metadata.json").read_text())
            headers["X-Sparsekit-SHA256"] = meta["artifact_sha256"]
        return FileResponse(path, headers=headers, filename=path.name)

    @app.post("/v1/builds/{job_id}/cancel")
    def cancel(job_id: str, caller: Caller = Depends(auth)):
        job = job_or_404(job_id, caller)
        if job.state in TERMINAL:
            return JSONResponse({"build": public_job(job, scrub), "cancelled": False, "reason": f"already {job.state}"}, status_code=409)
        jobs.finish(job.id, CANCELLED, error={"stage": "cancel", "message": "cancelled by request", "hint": ""})
        if job.state == RUNNING:
            executor.cancel(job.id)
        return {"build": public_job(jobs.get(job.id), scrub), "cancelled": True}

    return app
