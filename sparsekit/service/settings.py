"""Service settings: strict, from CLI flags or environment (``SPARSEKIT_*``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from sparsekit.config import StrictConfig
from sparsekit.errors import SparsekitError


class ServiceSettings(StrictConfig):
    """How the build service runs.

    Attributes:
        state_dir: job database, uploads, engine store and per-job results live here.
        host / port: bind address (loopback by default).
        tokens: accepted bearer tokens; empty disables auth, which is allowed on loopback only.
        max_upload_mib: ONNX upload limit, enforced while streaming (413 beyond it).
        job_timeout_s: wall-clock limit of one build (+ benchmark).
        executor: ``local`` (subprocess per build, one build per slot) or ``ray``.
        workers: build slots of the local executor (one per GPU; 0 accepts jobs but runs none).
        ray_address: Ray cluster address (None starts a local Ray).
        ray_accelerator_type: Ray accelerator type builds are routed to (e.g. ``H100``).
        max_attempts: a build interrupted by a restart is retried until this many attempts.
    """

    state_dir: Path = Path(".sparsekit-service")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    tokens: tuple[str, ...] = ()
    max_upload_mib: int = Field(2048, ge=1)
    job_timeout_s: float = Field(3600, gt=0)
    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=0)
    ray_address: str | None = None
    ray_accelerator_type: str | None = None
    max_attempts: int = Field(2, ge=1)

    def check(self) -> None:
        """Refuse unsafe combinations (no tokens on a non-loopback address)."""
        if not self.tokens and not _is_loopback(self.host):
            raise SparsekitError(f"refusing to serve on {self.host} without bearer tokens", "pass --token-file FILE (one token per line) or bind to 127.0.0.1")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "jobs.db"

    @property
    def uploads(self) -> Path:
        return self.state_dir / "uploads"

    @property
    def store(self) -> Path:
        return self.state_dir / "engines"

    @property
    def results(self) -> Path:
        return self.state_dir / "results"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: str | os.PathLike | None) -> tuple[str, ...]:
    """Tokens from a file (one per line, ``#`` comments) or ``SPARSEKIT_TOKENS`` (comma-separated)."""
    tokens: list[str] = []
    if path:
        p = Path(path)
        if not p.is_file():
            raise SparsekitError(f"token file '{p}' does not exist", "create it with one token per line")
        tokens += [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    tokens += os.environ.get("SPARSEKIT_TOKENS", "").split(",")
    tokens = [t for t in tokens if t]
    if any(len(t) < 16 for t in tokens):
        raise SparsekitError("a bearer token is shorter than 16 characters", "use long random tokens, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return tuple(tokens)
