"""Service settings: strict, from CLI flags or environment (``SPARSEKIT_*``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from sparsekit.config import StrictConfig
from sparsekit.errors import ServiceConfigError, SparsekitError
from sparsekit.service.validation import describe_validation_error

DAY_S = 86400.0

# The CLI flag of each setting, so a refusal names what the user typed.
FLAGS = {
    "state_dir": "--state-dir", "host": "--host", "port": "--port", "max_upload_mib": "--max-upload-mib", "job_timeout_s": "--job-timeout",
    "executor": "--executor", "workers": "--workers", "ray_address": "--ray-address", "ray_accelerator_type": "--ray-accelerator-type",
    "upload_idle_timeout_s": "--upload-idle-timeout", "upload_timeout_s": "--upload-timeout", "max_concurrent_uploads": "--max-concurrent-uploads",
    "min_free_mib": "--min-free-mib", "unhealthy_after_s": "--unhealthy-after", "header_timeout_s": "--header-timeout",
    "max_connections_per_ip": "--max-connections-per-ip", "max_unpacked_mib": "--max-unpacked-mib", "max_archive_members": "--max-archive-members",
}


class ServiceSettings(StrictConfig):
    """How the build service runs.

    Attributes:
        state_dir: job database, uploads, engine store and per-job results live here.
        host / port: bind address (loopback by default).
        tokens: accepted bearer tokens; a token sees only the builds it submitted. Empty (and no
            admin tokens) disables auth, which is allowed on loopback only.
        admin_tokens: bearer tokens that see and manage every build.
        max_upload_mib: upload limit (an ONNX or a model archive), enforced while streaming (413
            beyond it).
        max_unpacked_mib: most bytes a model archive may unpack to (413 beyond it); None: the
            upload limit.
        max_archive_members: most members (files and folders) a model archive may hold (422
            beyond it).
        job_timeout_s: wall-clock limit of one build (+ benchmark), everything the worker does
            included (ONNX checks, graph analysis, build); a request may ask for less.
        executor: ``local`` (subprocess per build, one build per slot) or ``ray``.
        workers: build slots of the local executor (one per GPU; 0 accepts jobs but runs none).
        ray_address: Ray cluster address (None starts a local Ray).
        ray_accelerator_type: Ray accelerator type builds are routed to (e.g. ``H100``).
        max_attempts: a build interrupted by a restart is retried until this many attempts.
        upload_idle_timeout_s: an upload that sends no byte for this long is dropped (408).
        upload_timeout_s: an upload must be complete within this many seconds (408).
        max_concurrent_uploads: uploads received at once; more are answered 503 (retry later).
        min_free_mib: free space the state folder's disks must keep; below it the service is
            not ready and refuses uploads (507).
        unhealthy_after_s: a build slot that cannot reach the job store for this long makes
            ``/healthz`` fail (it retries with back-off meanwhile).
        header_timeout_s: a connection that has not sent a complete request head this many
            seconds after it opened (or after its first byte of a later request) is closed (408).
        max_connections_per_ip: open connections allowed per client IP address; more are answered
            429 and closed at once (behind a reverse proxy all clients share its address).
    """

    state_dir: Path = Path(".sparsekit-service")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    max_upload_mib: int = Field(2048, ge=1, le=1 << 16)
    max_unpacked_mib: int | None = Field(None, ge=1, le=1 << 16)
    max_archive_members: int = Field(4096, ge=2, le=1 << 20)
    job_timeout_s: float = Field(3600, ge=1, le=7 * DAY_S)
    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=0, le=64)
    ray_address: str | None = None
    ray_accelerator_type: str | None = None
    max_attempts: int = Field(2, ge=1, le=10)
    upload_idle_timeout_s: float = Field(30, ge=0.1, le=3600)
    upload_timeout_s: float = Field(3600, ge=1, le=DAY_S)
    max_concurrent_uploads: int = Field(32, ge=1, le=1024)
    min_free_mib: int = Field(256, ge=0, le=1 << 20)
    unhealthy_after_s: float = Field(60, ge=0.1, le=DAY_S)
    header_timeout_s: float = Field(10, ge=0.1, le=3600)
    max_connections_per_ip: int = Field(32, ge=1, le=65536)

    @field_validator("state_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.absolute()  # jobs keep paths into it; they must not depend on the working folder

    @classmethod
    def from_options(cls, **options) -> "ServiceSettings":
        """Settings from CLI options, refusing bad values with the flag and its allowed range.

        Raises:
            ServiceConfigError: a value outside its range, or an unsafe combination.
        """
        try:
            settings = cls(**options)
        except ValidationError as exc:
            raise ServiceConfigError(f"invalid service setting: {describe_validation_error(cls, exc, FLAGS)}", "see 'sparsekit serve --help'") from exc
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse unsafe combinations (no tokens on a non-loopback address)."""
        if not self.auth_enabled and not _is_loopback(self.host):
            raise ServiceConfigError(f"refusing to serve on {self.host} without bearer tokens", "pass --token-file FILE (one token per line) or bind to 127.0.0.1")

    @property
    def auth_enabled(self) -> bool:
        """True when requests need a bearer token (user or admin)."""
        return bool(self.tokens or self.admin_tokens)

    @property
    def unpacked_limit_mib(self) -> int:
        """Most MiB a model archive may unpack to."""
        return self.max_unpacked_mib or self.max_upload_mib

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


def read_tokens(path: str | os.PathLike | None, env: str = "SPARSEKIT_TOKENS") -> tuple[str, ...]:
    """Tokens from a file (one per line, ``#`` comments) and the environment variable ``env``
    (comma-separated; ``SPARSEKIT_ADMIN_TOKENS`` for admin tokens)."""
    tokens: list[str] = []
    if path:
        p = Path(path)
        if not p.is_file():
            raise SparsekitError(f"token file '{p}' does not exist", "create it with one token per line")
        tokens += [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    tokens += [t.strip() for t in os.environ.get(env, "").split(",")]
    tokens = [t for t in tokens if t]
    if any(len(t) < 16 for t in tokens):
        raise SparsekitError("a bearer token is shorter than 16 characters", "use long random tokens, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return tuple(tokens)
