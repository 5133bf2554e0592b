"""A received archive upload made into a model folder: unpacked into a fresh hidden folder under
the uploads folder (:mod:`sparsekit.service.archives`, off the event loop), checked in a
short-lived process (:mod:`sparsekit.service.model_folder`: the API never parses ONNX), then
renamed to its content address ``uploads/<digest>.model/``. Any refusal is a 4xx with one line,
and removes everything the upload wrote."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from sparsekit.service.archives import ArchiveLimits, ArchiveRefused, unpack_archive
from sparsekit.service.state import ServiceState
from sparsekit.service.uploads import Upload, UploadRefused, _write_refusal

CHECK_TIMEOUT_S = 600.0
"""Longest the model check of one archive may take (it hashes every byte once)."""

MODEL_NAME = "model.onnx"
"""The ONNX's name in its stored folder (a client's name is never kept; data files keep theirs,
which the ONNX references)."""


@dataclass
class ModelFolder:
    """An unpacked, checked archive in its staging folder.

    Attributes:
        path: the staging folder (``uploads/.archive-<random>``).
        digest: content digest of the ONNX and its data files (the engine store's).
        bytes: their total size.
    """

    path: Path
    digest: str
    bytes: int


async def _checked(folder: Path, onnx_name: str) -> dict:
    """Run :mod:`sparsekit.service.model_folder` on ``folder`` in its own process (working folder
    ``folder``, so its messages name files only by their relative names)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sparsekit.service.model_folder", ".", onnx_name, cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_S)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    try:
        return json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        first = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "message": f"the model check stopped ({first[:200]})", "hint": "check the ONNX locally with 'sparsekit check'"}


def archive_limits(state: ServiceState) -> ArchiveLimits:
    settings = state.settings
    return ArchiveLimits(settings.max_archive_members, settings.unpacked_limit_mib << 20)


async def unpacked_upload(state: ServiceState, upload: Upload, kind: str) -> ModelFolder:
    """Unpack and check the archive ``upload`` (removed here in every case).

    Raises:
        HTTPException: 413 unpacks past the limit or a bomb, 422 a hostile or invalid archive or
            model (one line naming the member or rule), 507/503 the service's disk failed.
    """
    staging = state.settings.uploads / f".archive-{uuid.uuid4().hex}"
    try:
        try:
            unpacked = await run_in_threadpool(unpack_archive, upload.path, kind, staging, archive_limits(state))
        finally:
            upload.path.unlink(missing_ok=True)
        checked = await _checked(staging, unpacked.onnx)
        if not checked.get("ok"):
            raise ArchiveRefused(422, f"{checked.get('message')}; {checked.get('hint')}")
        if unpacked.onnx != MODEL_NAME:
            os.replace(staging / unpacked.onnx, staging / MODEL_NAME)
        return ModelFolder(staging, checked["digest"], int(checked["bytes"]))
    except ArchiveRefused as exc:
        shutil.rmtree(staging, ignore_errors=True)
        state.metrics.reject("size" if exc.status == 413 else "archive")
        raise HTTPException(exc.status, state.scrub(exc.detail)) from exc
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        refused: UploadRefused = _write_refusal(exc, state.disk, upload.size)
        state.metrics.reject(refused.reason)
        raise HTTPException(refused.status, refused.detail) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def stored_folder(state: ServiceState, folder: ModelFolder) -> Path:
    """Move the checked folder to ``uploads/<digest>.model`` (or drop it when that content is
    already stored) and return the stored ONNX."""
    final = state.settings.uploads / f"{folder.digest}.model"
    if final.is_dir():
        shutil.rmtree(folder.path, ignore_errors=True)
    else:
        os.rename(folder.path, final)
    return final / MODEL_NAME
