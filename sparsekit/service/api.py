"""The engine build service's HTTP API (FastAPI). The ONNX is the raw request body, streamed to
disk with a byte counter (413 past the limit, nothing kept); the build spec travels in the
``X-Build-Spec`` header as JSON. The API never parses ONNX or runs builds: workers do."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from sparsekit.service.jobs import CANCELLED, QUEUED, RUNNING, TERMINAL, JobStore
from sparsekit.service.settings import ServiceSettings

log = logging.getLogger(__name__)

ARTIFACTS = {"engine": None, "report.json": "report.json", "report.md": "report.md", "metadata.json": "metadata.json", "build.log": "build.log", "benchmark.json": None}


class Metrics:
    """In-process counters; job counts come from the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache_hits = 0
        self.joins = 0
        self.submits = 0
        self.rejected_uploads = 0

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


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
    """Build the FastAPI app: job store recovery, executor start, routes."""
    from sparsekit.backends.spec import BuildSpec
    from sparsekit.backends.store import engine_key, target_of
    from sparsekit.recipe.runner import kit_version
    from sparsekit.service.executors import make_executor

    for folder in (settings.state_dir, settings.uploads, settings.store, settings.results):
        folder.mkdir(parents=True, exist_ok=True)
    jobs = JobStore(settings.db_path)
    recovered = jobs.recover(settings.max_attempts)
    metrics = Metrics()
    executor = make_executor(settings, jobs)
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

    app = FastAPI(title="sparsekit engine build service", version=kit_version(), lifespan=lifespan, description="Builds dense and 2:4-sparse engines from ONNX, caches them by content, and returns them with their sparse-kernel report.")
    app.state.jobs, app.state.executor, app.state.metrics, app.state.settings = jobs, executor, metrics, settings
    if recovered["requeued"] or recovered["failed"]:
        log.warning("recovered jobs after restart: %s", recovered)

    def auth(authorization: str | None = Header(default=None)) -> None:
        if not settings.tokens:
            return
        scheme, _, token = (authorization or "").partition(" ")
        ok = False
        for t in settings.tokens:  # compare with every token, in constant time each
            ok |= secrets.compare_digest(token.encode(), t.encode())
        if scheme.lower() != "bearer" or not ok:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    def job_or_404(job_id: str):
        job = jobs.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
        if job is None:
            raise HTTPException(404, f"no build {job_id}")
        return job

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            jobs.counts()
        except Exception as exc:  # database unreadable
            return JSONResponse({"ready": False, "reason": f"job store: {exc}"}, status_code=503)
        if not executor.alive():
            return JSONResponse({"ready": False, "reason": "executor stopped"}, status_code=503)
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
        lines += ["# HELP sparsekit_rejected_uploads_total Uploads refused (size).", "# TYPE sparsekit_rejected_uploads_total counter", f"sparsekit_rejected_uploads_total {metrics.rejected_uploads}"]
        return "\n".join(lines) + "\n"

    @app.get("/v1/targets", dependencies=[Depends(auth)])
    def list_targets():
        return {"targets": target_list}

    @app.post("/v1/builds", dependencies=[Depends(auth)], status_code=202)
    async def submit(request: Request, x_build_spec: str = Header(..., description="build spec JSON (see BuildSpec)"), bench: bool = False):
        try:
            spec = BuildSpec.model_validate_json(x_build_spec)
        except ValueError as exc:
            raise HTTPException(422, f"invalid build spec: {str(exc).splitlines()[0]}")
        if spec.backend not in available:
            raise HTTPException(422, f"backend '{spec.backend}' is not available on this service; see /v1/targets")
        limit = settings.max_upload_mib << 20
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            metrics.bump("rejected_uploads")
            raise HTTPException(413, f"upload larger than {settings.max_upload_mib} MiB")
        tmp = settings.uploads / f".upload-{uuid.uuid4().hex}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise HTTPException(413, f"upload larger than {settings.max_upload_mib} MiB")
                    digest.update(chunk)
                    fh.write(chunk)
            if size == 0:
                raise HTTPException(422, "empty upload: send the ONNX file as the request body")
            sha = digest.hexdigest()
            final = settings.uploads / f"{sha}.onnx"  # safe name: content address, never the client's
            os.replace(tmp, final)
        except HTTPException as exc:
            if exc.status_code == 413:
                metrics.bump("rejected_uploads")
            raise
        finally:
            if tmp.exists():
                tmp.unlink()
        target = target_of(available[spec.backend]["environment"])
        ekey = engine_key(hashlib.sha256(sha.encode()).hexdigest(), spec, target, kit_version())
        key = hashlib.sha256(f"{ekey}+bench".encode()).hexdigest() if bench else ekey  # a benchmarked build is a different product
        job, how = jobs.submit(key, {"spec": spec.model_dump(mode="json"), "bench": bench, "target": target, "onnx_sha256": sha, "onnx_bytes": size, "engine_key": ekey}, str(final))
        metrics.bump("submits")
        if how == "cached":
            metrics.bump("cache_hits")
            return JSONResponse({"build": job.to_dict(), "how": how}, status_code=200)
        if how == "joined":
            metrics.bump("joins")
        executor.notify()
        return {"build": job.to_dict(), "how": how}

    @app.get("/v1/builds", dependencies=[Depends(auth)])
    def list_builds(limit: int = 100):
        return {"builds": [j.to_dict() for j in jobs.list(min(max(limit, 1), 1000))]}

    @app.get("/v1/builds/{job_id}", dependencies=[Depends(auth)])
    def get_build(job_id: str):
        return {"build": job_or_404(job_id).to_dict()}

    @app.get("/v1/builds/{job_id}/logs", dependencies=[Depends(auth)], response_class=PlainTextResponse)
    def get_logs(job_id: str):
        job = job_or_404(job_id)
        parts = []
        worker_log = settings.results / job.id / "worker.log"
        if worker_log.is_file():
            parts.append(worker_log.read_text(errors="replace"))
        if job.result and job.result.get("folder"):
            build_log = Path(job.result["folder"]) / "build.log"
            if build_log.is_file():
                parts.append(build_log.read_text(errors="replace"))
        return "\n".join(parts)

    @app.get("/v1/builds/{job_id}/artifacts/{name}", dependencies=[Depends(auth)])
    def get_artifact(job_id: str, name: str):
        job = job_or_404(job_id)
        if name not in ARTIFACTS:
            raise HTTPException(404, f"unknown artifact '{name}'; one of {sorted(ARTIFACTS)}")
        if job.state != "SUCCEEDED":
            raise HTTPException(409, f"build is {job.state}; artifacts exist only for SUCCEEDED builds")
        folder = Path(job.result["folder"])
        if name == "benchmark.json":
            if not job.result.get("bench"):
                raise HTTPException(404, "this build was submitted without a benchmark (bench=true)")
            return JSONResponse(job.result["bench"])
        path = folder / (job.result["artifact"] if name == "engine" else ARTIFACTS[name])
        if not path.is_file():
            raise HTTPException(410, f"artifact '{name}' is no longer in the store")
        headers = {}
        if name == "engine":
            meta = json.loads((folder / "metadata.json").read_text())
            headers["X-Sparsekit-SHA256"] = meta["artifact_sha256"]
        return FileResponse(path, headers=headers, filename=path.name)

    @app.post("/v1/builds/{job_id}/cancel", dependencies=[Depends(auth)])
    def cancel(job_id: str):
        job = job_or_404(job_id)
        if job.state in TERMINAL:
            return JSONResponse({"build": job.to_dict(), "cancelled": False, "reason": f"already {job.state}"}, status_code=409)
        jobs.finish(job.id, CANCELLED, error={"stage": "cancel", "message": "cancelled by request", "hint": ""})
        if job.state == RUNNING:
            executor.cancel(job.id)
        return {"build": jobs.get(job.id).to_dict(), "cancelled": True}

    return app
