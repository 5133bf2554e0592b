"""Content-addressed engine store: ``<store>/<key>/`` holds the artifact, its metadata and its
sparse-kernel report. Builds happen in a private temp folder renamed into place, so the store
never holds a half-written engine."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sparsekit._io import write_json_atomic, write_text_atomic
from sparsekit.backends.spec import BuildSpec

KEY_SCHEMA = 1
DEFAULT_STORE = Path("engines")


def onnx_digest(path: Path) -> str:
    """sha256 over the ONNX bytes and, in name order, any external-data files it references."""
    from sparsekit.analyze.onnx_weights import load_onnx
    from sparsekit.recipe.runner import file_sha256

    h = hashlib.sha256(file_sha256(path).encode())
    model = load_onnx(path, load_external_data=False)
    locations = sorted({e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"})
    for loc in locations:
        h.update(loc.encode() + file_sha256(path.parent / loc).encode())
    return h.hexdigest()


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
        "runtime": environment.get("tensorrt") or environment.get("onnxruntime"),
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


class EngineStore:
    """An engine store folder (default ``engines/``)."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORE) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> BuildRecord | None:
        meta_path = self.folder(key) / "metadata.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        artifact = self.folder(key) / meta["artifact"]
        if not artifact.is_file():
            return None
        return BuildRecord(key, self.folder(key), artifact, meta, True)

    @contextlib.contextmanager
    def staging(self, key: str) -> Iterator[Path]:
        """A private temp folder inside the store, removed unless :meth:`commit` moved it."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=self.root))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, key: str, staged: Path) -> Path:
        """Atomically publish ``staged`` as ``<key>/``; if another build won the race, keep theirs."""
        final = self.folder(key)
        try:
            os.rename(staged, final)
        except OSError:
            if not (final / "metadata.json").is_file():
                raise
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

    def write_record(self, staged: Path, artifact: Path, meta: dict, report, log: list[str]) -> None:
        from sparsekit.recipe.runner import file_sha256

        meta = {**meta, "artifact": artifact.name, "artifact_sha256": file_sha256(artifact), "artifact_bytes": artifact.stat().st_size, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(staged / "metadata.json", meta)
        write_json_atomic(staged / "report.json", report.to_dict())
        write_text_atomic(staged / "report.md", report.to_markdown())
        write_text_atomic(staged / "build.log", "\n".join(log) + ("\n" if log else ""))
