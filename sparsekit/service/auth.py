"""Who is calling: bearer tokens checked in constant time, and the identity a caller's builds are
stored under. A build is visible only to the token that submitted it; admin tokens see every
build; without auth (loopback only) there is one caller, who sees everything."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import HTTPException

from sparsekit.service.jobs import Job
from sparsekit.service.settings import ServiceSettings


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``owner`` is the identity stored on the jobs it submits (None without
    auth); ``admin`` callers see every job."""

    owner: str | None
    admin: bool

    def sees(self, job: Job) -> bool:
        """True when this caller may see ``job`` (its own, or any for an admin)."""
        return self.admin or (job.owner is not None and job.owner == self.owner)


def token_owner(token: str) -> str:
    """The identity a token's jobs are stored under: its SHA-256 (the token cannot be recovered)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class TokenChecker:
    """Turns an ``Authorization`` header into a :class:`Caller` (401 when auth is on and the header
    holds no accepted bearer token)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.enabled = settings.auth_enabled
        self._accepted = [(t, False) for t in settings.tokens] + [(t, True) for t in settings.admin_tokens]

    def caller(self, authorization: str | None) -> Caller:
        """The caller the header names.

        Raises:
            HTTPException: 401 with ``WWW-Authenticate: Bearer``.
        """
        if not self.enabled:
            return Caller(None, admin=True)
        scheme, _, token = (authorization or "").partition(" ")
        ok = admin = False
        for t, is_admin in self._accepted:  # compare with every token, in constant time each
            match = secrets.compare_digest(token.encode(), t.encode())
            ok |= match
            admin |= match and is_admin
        if scheme.lower() != "bearer" or not ok:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return Caller(token_owner(token), admin)
