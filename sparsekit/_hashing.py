"""Content hashes and the kit's version: what caches, manifests and the service key on."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sparsekit")
    except PackageNotFoundError:
        return "0+unknown"
