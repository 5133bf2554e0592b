"""Strict configuration base: unknown keys are errors, instances are frozen, and the canonical
JSON (key-sorted, compact) is their identity for hashing and caching."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    """Base of every user-facing config (recipes, build specs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical_json(self) -> str:
        """Key-sorted compact JSON: the identity of these settings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """sha256 hex digest of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()
