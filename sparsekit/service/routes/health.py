"""Health routes, open to every caller (no auth): ``/healthz`` (the build slots work),
``/readyz`` (the service takes builds: job store readable, executor alive, slots healthy, disks
not full) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from sparsekit.service.metrics import exposition
from sparsekit.service.state import ServiceState, get_state

router = APIRouter()


@router.get("/healthz")
def healthz(state: ServiceState = Depends(get_state)):
    """200 while every build slot works; 503 with the slots' problems otherwise."""
    problems = state.executor.health()
    if problems:
        return JSONResponse({"status": "failing", "problems": state.scrub.value(problems)}, status_code=503)
    return {"status": "ok"}


def not_ready(state: ServiceState) -> str | None:
    """Why the service cannot take builds now (None when it can)."""
    try:
        state.jobs.counts()
    except sqlite3.Error as exc:  # database unreadable
        full = state.state_disk_full(exc)
        return full if full is not None else state.scrub(f"job store: {exc}")
    if not state.executor.alive():
        return "executor stopped"
    problems = state.executor.health()
    if problems:
        return state.scrub(problems[0])
    return state.disk.problem() or None


@router.get("/readyz")
def readyz(state: ServiceState = Depends(get_state)):
    """200 ``{"ready": true}``, or 503 with the first reason it is not ready."""
    reason = not_ready(state)
    if reason is not None:
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
    return {"ready": True}


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(state: ServiceState = Depends(get_state)):
    """Builds by state, queue depth, build seconds, cache hits, joins, refused uploads by reason,
    uploads in progress and unhealthy slots."""
    counts = state.jobs.counts()
    seconds = state.jobs.build_seconds()
    return exposition(state.metrics, counts, seconds, state.gate.active, len(state.executor.health()))
