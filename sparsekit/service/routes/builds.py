"""Build routes: submit (``POST /v1/builds``), list, status, logs and cancel. Each caller sees only
the builds its token submitted (another's answer 404 as if they did not exist); admins see all.

A submission's ONNX is the raw request body, streamed to disk with a byte counter (413 past the
limit, 408 when it stalls, 503 when too many arrive at once, 507 when the disk is full; nothing
kept in any case); the build spec travels in the ``X-Build-Spec`` header as JSON and a refusal
names the field and its range. The ONNX is stored under its content address, never a client's
name, and never parsed here: workers do that. A body that is a ``.tar``, ``.tar.gz`` or ``.zip``
(told by its first bytes) is a model with external data: unpacked and checked before the job
exists (:mod:`sparsekit.service.archive_uploads`), stored as ``<digest>.model/``."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.store import engine_key, target_of
from sparsekit.errors import BuildSpecError
from sparsekit._hashing import kit_version
from sparsekit.service.auth import Caller
from sparsekit.service.disk import MIB
from sparsekit.service.jobs import CANCELLED, RUNNING, TERMINAL, Job
from sparsekit.service.public import public_job
from sparsekit.service.routes.deps import current_caller, job_or_404
from sparsekit.service.state import ServiceState, get_state
from sparsekit.service.archive_uploads import ModelFolder, stored_folder, unpacked_upload
from sparsekit.service.archives import archive_kind
from sparsekit.service.uploads import Upload, UploadRefused, check_declared_size, receive_upload
from sparsekit.service.validation import build_spec_from

MIN_BUILD_TIMEOUT_S = 1.0

router = APIRouter()


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    """The answer to an upload whose body was not (all) read: the connection closes after it, so a
    client that keeps sending holds nothing."""
    return HTTPException(status, detail, headers={**(headers or {}), "Connection": "close"})


def checked_spec(state: ServiceState, x_build_spec: str, timeout_s: float | None) -> BuildSpec:
    """The spec header parsed, its backend available here and ``timeout_s`` (seconds) within
    limits; 422 naming the problem otherwise (before any of the body is read)."""
    try:
        spec = build_spec_from(x_build_spec)
    except BuildSpecError as exc:
        raise refusal(422, str(exc)) from exc
    if spec.backend not in state.available:
        raise refusal(422, f"backend '{spec.backend}' is not available on this service; see /v1/targets")
    limit = state.settings.job_timeout_s
    if timeout_s is not None and not MIN_BUILD_TIMEOUT_S <= timeout_s <= limit:
        raise refusal(422, f"timeout_s = {timeout_s:g} is not allowed (allowed: a number from {MIN_BUILD_TIMEOUT_S:g} to {limit:g} s, this service's --job-timeout)")
    return spec


async def received(request: Request, state: ServiceState) -> Upload:
    """The request body, streamed into a temp file within the size, time and concurrency limits
    (refusals counted by reason)."""
    settings = state.settings
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    try:
        check_declared_size(declared, settings.max_upload_mib * MIB, state.disk)
        with state.gate.enter():
            return await receive_upload(request, settings.uploads, settings.max_upload_mib * MIB, settings.upload_idle_timeout_s, settings.upload_timeout_s, state.disk, declared)
    except UploadRefused as exc:
        state.metrics.reject(exc.reason)
        raise refusal(exc.status, exc.detail, exc.headers) from exc


def job_request(state: ServiceState, spec: BuildSpec, upload: Upload | ModelFolder, bench: bool, timeout_s: float | None) -> tuple[str, dict]:
    """The job key (the engine key; another product when benchmarked) and the stored request.

    The engine key is over the content the build will hash (:func:`~sparsekit.backends.store.onnx_digest`):
    a single ONNX's sha256, or a model folder's digest of its ONNX and data files.
    """
    target = target_of(state.available[spec.backend]["environment"])
    if isinstance(upload, ModelFolder):
        digest, sha, size = upload.digest, upload.digest, upload.bytes
    else:
        digest, sha, size = hashlib.sha256(upload.sha256.encode()).hexdigest(), upload.sha256, upload.size
    ekey = engine_key(digest, spec, target, kit_version())
    key = hashlib.sha256(f"{ekey}+bench".encode()).hexdigest() if bench else ekey
    record = {"spec": spec.model_dump(mode="json"), "bench": bench, "target": target, "onnx_sha256": sha, "onnx_bytes": size, "engine_key": ekey}
    if isinstance(upload, ModelFolder):
        record["archive"] = True
    if timeout_s is not None:
        record["timeout_s"] = timeout_s
    return key, record


def enqueue(state: ServiceState, upload: Upload | ModelFolder, key: str, record: dict, caller: Caller) -> tuple[Job, str]:
    """Move the upload (file or model folder) to its content address and submit the job
    (``created``, ``joined`` or ``cached``); on failure neither is kept (507 disk full, 503 job
    store unavailable)."""
    folder = isinstance(upload, ModelFolder)
    final = state.settings.uploads / (f"{upload.digest}.model" if folder else f"{upload.sha256}.onnx")  # safe name: content address, never the client's
    existed = final.exists()  # no await from here to the job: no other request interleaves
    try:
        onnx = stored_folder(state, upload) if folder else final
        if not folder:
            os.replace(upload.path, final)
        return state.jobs.submit(key, record, str(onnx), owner=caller.owner)
    except (OSError, sqlite3.Error) as exc:  # never an upload without a job
        if folder:
            shutil.rmtree(upload.path, ignore_errors=True)
            if not existed:
                shutil.rmtree(final, ignore_errors=True)
        else:
            upload.path.unlink(missing_ok=True)
            if not existed:
                final.unlink(missing_ok=True)
        failure = state.store_failure(exc)
        state.metrics.reject("disk_full" if failure.status_code == 507 else "storage")
        raise failure from exc


@router.post("/v1/builds", status_code=202)
async def submit(request: Request, x_build_spec: str = Header(..., description="build spec JSON (see BuildSpec)"), bench: bool = False, timeout_s: float | None = None, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """Queue a build of the uploaded ONNX (or model archive): 202 created or joined, 200 served
    from the cache."""
    spec = checked_spec(state, x_build_spec, timeout_s)
    upload = await received(request, state)
    kind = archive_kind(upload.path)
    if kind is not None:
        upload = await unpacked_upload(state, upload, kind)
    key, record = job_request(state, spec, upload, bench, timeout_s)
    job, how = enqueue(state, upload, key, record, caller)
    state.metrics.bump("submits")
    if how == "cached":
        state.metrics.bump("cache_hits")
        return JSONResponse({"build": public_job(job, state.scrub), "how": how}, status_code=200)
    if how == "joined":
        state.metrics.bump("joins")
    state.executor.notify()
    return {"build": public_job(job, state.scrub), "how": how}


@router.get("/v1/builds")
def list_builds(limit: int = 100, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """The caller's newest builds (every build for an admin), ``limit`` clamped to 1..1000."""
    return {"builds": [public_job(j, state.scrub) for j in state.jobs.list(min(max(limit, 1), 1000), owner=caller.owner, everyone=caller.admin)]}


@router.get("/v1/builds/{job_id}")
def get_build(job_id: str, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """One build's record."""
    return {"build": public_job(job_or_404(state, job_id, caller), state.scrub)}


@router.get("/v1/builds/{job_id}/logs", response_class=PlainTextResponse)
def get_logs(job_id: str, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """The worker's log, then the build's own log (both as far as they exist), without paths."""
    job = job_or_404(state, job_id, caller)
    parts = []
    worker_log = state.settings.results / job.id / "worker.log"
    if worker_log.is_file():
        parts.append(worker_log.read_text(errors="replace"))
    if job.result and job.result.get("folder"):
        build_log = Path(job.result["folder"]) / "build.log"
        if build_log.is_file():
            parts.append(build_log.read_text(errors="replace"))
    return state.scrub("\n".join(parts))


@router.post("/v1/builds/{job_id}/cancel")
def cancel(job_id: str, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """Cancel a queued or running build; 409 when it already ended."""
    job = job_or_404(state, job_id, caller)
    if job.state in TERMINAL:
        return JSONResponse({"build": public_job(job, state.scrub), "cancelled": False, "reason": f"already {job.state}"}, status_code=409)
    state.jobs.finish(job.id, CANCELLED, error={"stage": "cancel", "message": "cancelled by request", "hint": ""})
    if job.state == RUNNING:
        state.executor.cancel(job.id)
    return {"build": public_job(state.jobs.get(job.id), state.scrub), "cancelled": True}
