"""Content-addressed engine store: ``<store>/<key>/`` holds the artifact (and any data files next
to it), its metadata and its sparse-kernel report. Builds happen in a private temp folder renamed
into place, so the store never holds a half-written engine; a cache hit re-checks the artifact's
sha256 against its metadata, and a replaced entry is swapped in atomically."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from sparsekit._io import write_json_atomic, write_text_atomic
from sparsekit.backends.spec import BuildSpec
from sparsekit._hashing import file_sha256
from sparsekit.backends.onnx_external import external_data_files
from sparsekit.onnx_io.load import load_onnx

log = logging.getLogger(__name__)

KEY_SCHEMA = 1
DEFAULT_STORE = Path("engines")


def onnx_digest(path: Path, model=None) -> str:
    """sha256 over the ONNX bytes and, in location order, the external-data files it references.

    The locations are checked (:func:`~sparsekit.backends.onnx_external.external_data_files`)
    before any of them is read; ``model`` is the file already loaded without its external data
    (None loads it).

    Raises:
        OnnxModelError: the ONNX is missing or unreadable.
        ExternalDataError: an external-data location is unsafe, missing or too short.
    """
    path = Path(path)
    files = external_data_files(load_onnx(path, load_external_data=False) if model is None else model, path)
    h = hashlib.sha256(file_sha256(path).encode())
    for f in files:
        h.update(f.relative_to(path.parent).as_posix().encode() + file_sha256(f).encode())
    return h.hexdigest()


def _exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); where the
    kernel or libc lacks it, move ``b`` aside, ``a`` into place, and the old ``b`` to ``a``."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def engine_key(onnx_sha256: str, spec: BuildSpec, target: dict, kit_version: str) -> str:
    """The engine's identity: ONNX content, canonical spec, target (GPU, CC, TensorRT/CUDA or ORT
    version, OS/arch), kit version and key schema. Never the ONNX path."""
    blob = {"onnx": onnx_sha256, "spec": json.loads(spec.canonical_json()), "target": target, "kit": kit_version, "schema": KEY_SCHEMA}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def target_of(environment: dict) -> dict:
    """The parts of a backend environment an engine is tied to (clocks and build time excluded)."""
    gpu = environment.get("gpu") or {}
    return {
        "backend": environment.get("backend"),
        "runtime": environment.get("tensorrt") or environment.get("tensorrt_rtx") or environment.get("onnxruntime"),
        "cuda": environment.get("cuda_runtime"),
        "gpu": gpu.get("name"),
        "cc": gpu.get("compute_capability"),
        "os": environment.get("os"),
        "machine": environment.get("machine"),
    }


@dataclass
class BuildRecord:
    """A built (or cached) artifact in the store."""

    key: str
    folder: Path
    artifact: Path
    metadata: dict
    cached: bool

    @property
    def report(self) -> dict:
        return json.loads((self.folder / "report.json").read_text())

    @property
    def data_files(self) -> list[Path]:
        """Files the artifact needs next to it (e.g. an ONNX artifact's external data)."""
        return [self.folder / name for name in sorted(self.metadata.get("artifact_files", {}))]


class EngineStore:
    """An engine store folder (default ``engines/``)."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORE) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> BuildRecord | None:
        """The stored build of ``key`` if its files are intact; None (with a warning when an entry
        exists but is damaged) otherwise, so that the caller rebuilds it."""
        folder = self.folder(key)
        if not (folder / "metadata.json").is_file():
            return None
        problem = self.entry_problem(folder)
        if problem:
            log.warning("engine %s in the store %s: rebuilding it", key[:12], problem)
            return None
        meta = json.loads((folder / "metadata.json").read_text())
        return BuildRecord(key, folder, folder / meta["artifact"], meta, True)

    @staticmethod
    def entry_problem(folder: Path) -> str | None:
        """Why the entry in ``folder`` cannot be served (unreadable metadata, a missing file, a
        sha256 that differs from the recorded one), or None when it is intact."""
        try:
            meta = json.loads((folder / "metadata.json").read_text())
            expected = {meta["artifact"]: meta["artifact_sha256"], **meta.get("artifact_files", {})}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"has unreadable metadata ({type(exc).__name__})"
        for name, sha in expected.items():
            path = folder / name
            if not path.is_file():
                return f"lacks its file '{name}'"
            if file_sha256(path) != sha:
                return f"has a '{name}' whose sha256 differs from its metadata (corrupted or altered)"
        return None

    @contextlib.contextmanager
    def staging(self, key: str) -> Iterator[Path]:
        """A private temp folder inside the store, removed unless :meth:`commit` moved it."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=self.root))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, key: str, staged: Path, replace: bool = False) -> Path:
        """Atomically publish ``staged`` as ``<key>/``.

        Args:
            key: the engine key.
            staged: a folder from :meth:`staging` holding a complete entry.
            replace: replace an intact entry too (``--force``). A damaged entry is always replaced;
                an intact one that another build published meanwhile is kept otherwise.

        The swap is one atomic rename: readers see the old entry or the new one, never a mix; the
        old entry ends up in ``staged`` and is removed with it.
        """
        final = self.folder(key)
        try:
            os.rename(staged, final)
            return final
        except OSError:
            if not final.exists():
                raise
        if replace or self.entry_problem(final) is not None:
            _exchange(staged, final)
        return final

    @contextlib.contextmanager
    def timing_cache(self, target: dict) -> Iterator[Path]:
        """The timing-cache file for this GPU/TensorRT/CUDA, held under an exclusive lock."""
        name = "_".join(str(target.get(k) or "na") for k in ("gpu", "cc", "runtime", "cuda")).replace(" ", "-").replace("/", "-")
        folder = self.root / "timing-caches"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder / f"{name}.cache"
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def write_record(self, staged: Path, artifact: Path, meta: dict, report, log_lines: list[str], data_files: Sequence[Path] = ()) -> None:
        """Write metadata (with the sha256 of the artifact and of each data file), report and log."""
        meta = {
            **meta, "artifact": artifact.name, "artifact_sha256": file_sha256(artifact), "artifact_bytes": artifact.stat().st_size,
            "artifact_files": {f.name: file_sha256(f) for f in data_files}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json_atomic(staged / "metadata.json", meta)
        write_json_atomic(staged / "report.json", report.to_dict())
        write_text_atomic(staged / "report.md", report.to_markdown())
        write_text_atomic(staged / "build.log", "\n".join(log_lines) + ("\n" if log_lines else ""))
