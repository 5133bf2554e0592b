"""The engine build service's HTTP API (FastAPI): the app that :func:`create_app` assembles from
the routers in ``sparsekit.service.routes`` over one :class:`~sparsekit.service.state.ServiceState`.

The API never parses ONNX or runs builds: workers do. Answers never contain the server's absolute
paths. A build (its record, logs and artifacts) is visible only to the bearer token that submitted
it (others get 404, as for a build that does not exist); admin tokens see every build. Without
auth (loopback only) there is one caller, who sees everything."""

from __future__ import annotations

import contextlib
import functools
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sparsekit._hashing import kit_version
from sparsekit.service.routes import artifacts, builds, health, targets
from sparsekit.service.settings import ServiceSettings
from sparsekit.service.state import ServiceState, get_state, open_state

ROUTERS = (health.router, targets.router, builds.router, artifacts.router)
DESCRIPTION = "Builds dense and 2:4-sparse engines from ONNX, caches them by content, and returns them with their sparse-kernel report."


@contextlib.asynccontextmanager
async def serving(_app: FastAPI, state: ServiceState, start_executor: bool):
    """The app's lifespan: build slots run while it serves; at its end running builds are stopped
    (their jobs queued again) and the state folder is released."""
    if start_executor:
        state.executor.start()
    try:
        yield
    finally:
        state.executor.stop()
        state.state_lock.close()


async def job_store_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
    """A job-store error no route handled: 507 when the state folder's disk is full, else 503."""
    failure = get_state(request).store_failure(exc)
    return JSONResponse({"detail": failure.detail}, status_code=failure.status_code, headers=failure.headers)


def create_app(settings: ServiceSettings, start_executor: bool = True) -> FastAPI:
    """Build the FastAPI app: state-folder lock and recovery, executor (started with the app's
    lifespan unless ``start_executor`` is False), routes.

    Raises:
        ServiceStateError: another server holds the state folder, or its job database cannot be
            opened.
    """
    state = open_state(settings)
    lifespan = functools.partial(serving, state=state, start_executor=start_executor)
    app = FastAPI(title="sparsekit engine build service", version=kit_version(), lifespan=lifespan, description=DESCRIPTION)
    app.state.service = state
    app.add_exception_handler(sqlite3.Error, job_store_error)
    for router in ROUTERS:
        app.include_router(router)
    return app
