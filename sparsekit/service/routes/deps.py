"""Dependencies the routers share: the authenticated caller, and a build the caller may see."""

from __future__ import annotations

from fastapi import Depends, Header, HTTPException

from sparsekit.service.auth import Caller
from sparsekit.service.jobs import Job
from sparsekit.service.state import ServiceState, get_state


def current_caller(authorization: str | None = Header(default=None), state: ServiceState = Depends(get_state)) -> Caller:
    """FastAPI dependency: the caller the ``Authorization`` header names (401 without a valid
    bearer token when auth is on)."""
    return state.tokens.caller(authorization)


def job_or_404(state: ServiceState, job_id: str, caller: Caller) -> Job:
    """The job, if it exists and ``caller`` may see it; 404 alike otherwise (another owner's build
    is indistinguishable from one that does not exist)."""
    job = state.jobs.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None or not caller.sees(job):
        raise HTTPException(404, f"no build {job_id}")
    return job
