"""``/v1/builds/{id}/artifacts/{name}``: a succeeded build's engine (with its SHA-256 in
``X-Sparsekit-SHA256``), the engine's external data (``engine.data``: an ONNX Runtime artifact of
a model with external data; 404 for builds without), reports, metadata, build log and benchmark,
for the caller who may see the build. 404 unknown name, 409 not SUCCEEDED, 410 no longer in the
store."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from sparsekit.service.auth import Caller
from sparsekit.service.jobs import Job
from sparsekit.service.routes.deps import current_caller, job_or_404
from sparsekit.service.state import ServiceState, get_state

# name -> file in the build folder (None: the engine's own name, or the benchmark in the job)
ARTIFACTS = {"engine": None, "engine.data": None, "report.json": "report.json", "report.md": "report.md", "metadata.json": "metadata.json", "build.log": "build.log", "benchmark.json": None}

router = APIRouter()


def engine_headers(folder: Path) -> dict[str, str]:
    """The engine's SHA-256 as its metadata recorded it at build time."""
    meta = json.loads((folder / "metadata.json").read_text())
    return {"X-Sparsekit-SHA256": meta["artifact_sha256"]}


def artifact_path(job: Job, name: str) -> Path:
    """Where artifact ``name`` of the succeeded ``job`` lies (410 when it is gone)."""
    folder = Path(job.result["folder"])
    if name == "engine.data":
        path = folder / f"{job.result['artifact']}.data"
        if not path.is_file() and (folder / job.result["artifact"]).is_file():
            raise HTTPException(404, "this build's engine has no external data: the engine is one file")
    else:
        path = folder / (job.result["artifact"] if name == "engine" else ARTIFACTS[name])
    if not path.is_file():
        raise HTTPException(410, f"artifact '{name}' is no longer in the store")
    return path


@router.get("/v1/builds/{job_id}/artifacts/{name}")
def get_artifact(job_id: str, name: str, caller: Caller = Depends(current_caller), state: ServiceState = Depends(get_state)):
    """One artifact of a SUCCEEDED build, streamed from the engine store."""
    job = job_or_404(state, job_id, caller)
    if name not in ARTIFACTS:
        raise HTTPException(404, f"unknown artifact '{name}'; one of {sorted(ARTIFACTS)}")
    if job.state != "SUCCEEDED":
        raise HTTPException(409, f"build is {job.state}; artifacts exist only for SUCCEEDED builds")
    if name == "benchmark.json":
        if not job.result.get("bench"):
            raise HTTPException(404, "this build was submitted without a benchmark (bench=true)")
        return JSONResponse(state.scrub.value(job.result["bench"]))
    path = artifact_path(job, name)
    headers = engine_headers(Path(job.result["folder"])) if name == "engine" else {}
    return FileResponse(path, headers=headers, filename=path.name)
