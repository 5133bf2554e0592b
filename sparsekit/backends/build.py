"""Build engines into the store: one, or a dense/sparse pair that differs only in the sparse flag."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sparsekit.onnx_io.load import load_onnx
from sparsekit.backends.registry import get_backend
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.store import BuildRecord, EngineStore, engine_key, onnx_digest, target_of
from sparsekit._hashing import kit_version
from sparsekit.backends.onnx_external import external_data_files

log = logging.getLogger(__name__)


def build_engine(onnx_path: str | os.PathLike, spec: BuildSpec, store: EngineStore | str | os.PathLike = "engines", force: bool = False, model=None) -> BuildRecord:
    """Build ``onnx_path`` with ``spec`` into the store, or return the cached build.

    Args:
        onnx_path: a typed ONNX file (see ``sparsekit export``).
        spec: the build spec; its backend does the work.
        store: the engine store (folder or :class:`EngineStore`).
        force: rebuild even when the store holds this key.
        model: the ONNX at ``onnx_path`` already loaded without its external data; None loads it
            (once: the backend, the store key and the report all use this model).

    A cache hit is served only when the stored artifact still has the sha256 its metadata records;
    a damaged entry is rebuilt (with a warning) and replaced, and ``force`` replaces an intact one,
    each in one atomic swap.

    Raises:
        MissingDependencyError: the backend's runtime (e.g. TensorRT) is not installed.
        ExternalDataError: an external-data location is absolute, has ``..``, leads out of the
            ONNX's folder, is not a regular file or is missing (checked before anything reads it).
        SparsekitError: the machine or ONNX cannot do this build (no GPU, pre-Ampere GPU for a
            sparse build, fp32 ONNX asked to build sparse, parser errors per node, a precision
            a target GPU lacks).
    """
    onnx_path = Path(onnx_path)
    if model is None:
        model = load_onnx(onnx_path, load_external_data=False)  # clear error for missing/corrupt files
    external_data_files(model, onnx_path)  # unsafe external data is refused before anything reads or hashes it
    store = store if isinstance(store, EngineStore) else EngineStore(store)
    backend = get_backend(spec.backend)
    backend.validate(onnx_path, spec, model)
    env = backend.environment()
    digest = onnx_digest(onnx_path, model)
    target = target_of(env)
    key = engine_key(digest, spec, target, kit_version())
    cached = None if force else store.get(key)
    if cached is not None:
        log.info("engine %s found in the store", key[:12])
        return cached
    start = time.perf_counter()
    with store.staging(key) as staged:
        if spec.timing_cache and getattr(backend, "uses_timing_cache", False):
            with store.timing_cache(target) as cache:
                out = backend.build(onnx_path, spec, staged, model, timing_cache=cache)
        else:
            out = backend.build(onnx_path, spec, staged, model)
        meta = {
            "key": key, "onnx": str(onnx_path), "onnx_sha256": digest, "spec": spec.model_dump(mode="json"), "spec_sha256": spec.sha256(),
            "target": target, "environment": out.environment, "kit_version": kit_version(), "build_seconds": round(time.perf_counter() - start, 3),
        }
        store.write_record(staged, out.artifact, meta, out.report, out.log, out.data_files)
        folder = store.commit(key, staged, replace=force)
    record = store.get(key)
    record.cached = False
    log.info("built %s into %s", onnx_path, folder)
    return record


@dataclass
class BuildPair:
    """Dense and sparse builds of one ONNX with identical specs except the sparse flag."""

    dense: BuildRecord
    sparse: BuildRecord

    def comparison(self) -> list[dict]:
        """Per layer: 2:4 in ONNX, and what each build did (eligible / sparse kernel / tactic)."""
        dense = {layer["name"]: layer for layer in self.dense.report["layers"]}
        rows = []
        for s in self.sparse.report["layers"]:
            d = dense.get(s["name"], {})
            rows.append({"name": s["name"], "onnx_2to4": s["onnx_2to4"], "flop_share": s["flop_share"], "dense_tactic": d.get("tactic", ""), "sparse_eligible": s["eligible"], "sparse_kernel": s["sparse_kernel"], "sparse_tactic": s["tactic"]})
        return rows


def build_pair(onnx_path: str | os.PathLike, spec: BuildSpec, store: EngineStore | str | os.PathLike = "engines", force: bool = False, model=None) -> BuildPair:
    """Build the dense and the sparse engine of ``onnx_path`` (same spec, only ``sparse`` differs),
    from one load of the ONNX (``model``, as in :func:`build_engine`)."""
    if model is None:
        model = load_onnx(onnx_path, load_external_data=False)
    return BuildPair(build_engine(onnx_path, spec.with_sparse(False), store, force, model), build_engine(onnx_path, spec.with_sparse(True), store, force, model))
