"""Content hashes of what a recipe reads from outside its run folder: the model's source (a
factory's file, an ``hf:`` folder's config, weights and tokenizer, a checkpoint) and calibration
files. They go into the stage keys, so editing a factory or replacing weights re-runs the stages.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from sparsekit._hashing import file_sha256
from sparsekit.models.hf import PREFIX

_CACHE: dict[tuple[str, int, int], str] = {}


def _hash(path: Path) -> str:
    """sha256 of a file, remembered by (path, mtime, size) for the life of the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = file_sha256(path)
    return _CACHE[key]


def _module_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and Path(spec.origin).is_file() else None


def source_fingerprint(spec: str) -> dict[str, str]:
    """File name -> sha256 of what a model source reads: the factory's ``.py`` file (or the
    module's), every file of an ``hf:`` folder, a checkpoint; empty for zoo names (the kit version
    covers them) and for files that do not exist (loading the model reports those)."""
    if spec.startswith(PREFIX):
        folder = Path(spec[len(PREFIX):]).expanduser()
        files = sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
        return {f.name: _hash(f) for f in files}
    target, sep, _ = spec.rpartition(":")
    if sep and target.endswith(".py"):
        path = Path(target).expanduser()
    elif sep and not spec.startswith("torchvision:"):
        path = _module_file(target)
    else:
        path = Path(spec).expanduser() if spec.endswith((".pt", ".pth")) else None
    return {path.name: _hash(path)} if path is not None and path.is_file() else {}


def data_fingerprint(path: str | None) -> str | None:
    """sha256 of a calibration file (None for none, for ``module:fn`` loaders, or a missing file)."""
    if not path:
        return None
    target, sep, _ = path.rpartition(":")
    file = Path(target if sep and target.endswith(".py") else path).expanduser()
    return _hash(file) if file.is_file() else None


def folder_fingerprint(path: str | None) -> str | None:
    """One sha256 over a folder's files (relative path and content; an image folder, a
    ``datasets`` folder), or None for none / not a folder."""
    import hashlib

    folder = Path(path).expanduser() if path else None
    if folder is None or not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(folder)}\0{_hash(f)}\n".encode())
    return digest.hexdigest()
