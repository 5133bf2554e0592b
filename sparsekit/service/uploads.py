"""Receiving an ONNX upload: streamed to a temp file with a byte counter, a timeout on every read
and on the whole body, and a cap on how many uploads are received at once. A refused, stalled or
broken upload leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

from starlette.requests import ClientDisconnect, Request

from sparsekit.service.disk import MIB, DiskGuard, is_disk_full

UPLOADS_ROLE = "uploads folder"


class UploadRefused(Exception):
    """An upload the service does not take: HTTP ``status``, the client's ``detail``, and the
    ``reason`` counted in ``/metrics``."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason, self.headers = status, detail, reason, headers


@dataclass
class Upload:
    """A completely received upload in its temp file (``path``; the caller renames it)."""

    path: Path
    sha256: str
    size: int


class UploadGate:
    """At most ``limit`` uploads received at once (used from the event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Hold one upload place; raises :class:`UploadRefused` (503) when all are taken."""
        if self.active >= self.limit:
            raise UploadRefused(503, f"{self.active} uploads are in progress, the most this service takes at once; retry shortly", "busy", {"Retry-After": "5"})
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


def check_declared_size(declared: int | None, limit_bytes: int, disk: DiskGuard) -> None:
    """Refuse early what the Content-Length already shows: too large (413) or no room (507)."""
    if declared is not None and declared > limit_bytes:
        raise UploadRefused(413, f"upload larger than {limit_bytes // MIB} MiB", "size")
    short = disk.shortfall(UPLOADS_ROLE, declared or 0)
    if short:
        raise UploadRefused(507, short, "disk_full")


async def _next_chunk(chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop, deadline: float, idle_s: float, total_s: float) -> bytes | None:
    """The next piece of the body (None at its end), waiting at most ``idle_s`` seconds and never
    past ``deadline`` (loop time, seconds).

    Raises:
        UploadRefused: 408 stalled or too slow, 400 client gone.
    """
    wait = min(idle_s, deadline - loop.time())
    try:
        return await asyncio.wait_for(chunks.__anext__(), max(wait, 0.0))
    except StopAsyncIteration:
        return None
    except asyncio.TimeoutError:
        if wait < idle_s:
            raise UploadRefused(408, f"the upload was not complete after {total_s:.0f} s (the service's limit)", "timeout") from None
        raise UploadRefused(408, f"the upload sent no data for {idle_s:.0f} s; send the file in one go", "timeout") from None
    except ClientDisconnect:
        raise UploadRefused(400, "the client disconnected before the upload was complete", "disconnected") from None


def _write_refusal(exc: OSError, disk: DiskGuard, need_bytes: int) -> UploadRefused:
    """The refusal of an upload its temp file could not take: 507 on a full disk (noted, with
    ``need_bytes`` wanted), else 503."""
    if is_disk_full(exc):
        disk.note_full(UPLOADS_ROLE, need_bytes)
        return UploadRefused(507, disk.shortfall(UPLOADS_ROLE) or "disk full in the uploads folder", "disk_full")
    return UploadRefused(503, f"the service cannot store uploads now ({exc.strerror})", "storage")


async def receive_upload(request: Request, folder: Path, limit_bytes: int, idle_s: float, total_s: float, disk: DiskGuard, declared: int | None = None) -> Upload:
    """Stream the request body to ``folder/.upload-<random>``, hashing it on the way.

    Args:
        request: the HTTP request whose raw body is the ONNX file.
        folder: the uploads folder (the temp file is created there, never under a client's name).
        limit_bytes: the largest body taken (413 beyond it).
        idle_s: longest wait for the next bytes (408 after it).
        total_s: longest time for the whole body (408 after it).
        disk: notified when the disk is full (507).
        declared: the Content-Length, if the client sent one.

    Raises:
        UploadRefused: 400 client gone, 408 stalled or too slow, 413 too large, 422 empty,
            503 cannot write, 507 disk full. The temp file is removed in every case.
    """
    tmp = folder / f".upload-{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    chunks = request.stream().__aiter__()
    try:
        try:
            with open(tmp, "wb") as fh:
                while (chunk := await _next_chunk(chunks, loop, deadline, idle_s, total_s)) is not None:
                    size += len(chunk)
                    if size > limit_bytes:
                        raise UploadRefused(413, f"upload larger than {limit_bytes // MIB} MiB", "size")
                    digest.update(chunk)
                    fh.write(chunk)
        except OSError as exc:
            raise _write_refusal(exc, disk, max(declared or 0, size)) from exc
        if size == 0:
            raise UploadRefused(422, "empty upload: send the ONNX file as the request body", "empty")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Upload(tmp, digest.hexdigest(), size)
