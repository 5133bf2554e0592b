"""Paired dense-vs-sparse benchmarks of one ONNX over a batch sweep (TensorRT engines or ONNX
Runtime), with the evidence attached: Amdahl bound from the ONNX, sparse-kernel counts, sizes and
memory, machine facts and measurement settings. PyTorch models: :mod:`sparsekit.bench.torch_pair`."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from sparsekit.bench.harness import BenchConfig, measure_pair
from sparsekit.bench.machine import machine_facts
from sparsekit.analyze.onnx_layers import analyze_onnx
from sparsekit.analyze.rules import amdahl_bound
from sparsekit.backends.build import build_pair
from sparsekit.backends.onnx_precision import onnx_precision
from sparsekit.backends.spec import BuildSpec, ShapeProfile
from sparsekit.bench.ort_runner import OrtTimedRunner
from sparsekit.bench.trt_runner import TrtTimedRunner
from sparsekit.export.export import input_spec_of
from sparsekit.onnx_io.load import load_onnx
from sparsekit.sparsify.check import check_onnx

log = logging.getLogger(__name__)


def _amdahl_from_onnx(onnx_path: Path, model=None) -> dict:
    sparse = {layer.name for layer in check_onnx(onnx_path, model=model).layers if layer.trt_sparse}  # 2:4 AND runnable sparse by TensorRT
    share = sum(layer.flop_share or 0.0 for layer in analyze_onnx(onnx_path, model).layers if layer.name in sparse)
    return {"sparse_flop_share": round(share, 4), "bound": round(amdahl_bound(share), 4), "sparse_layers_in_onnx": len(sparse)}


def bench_onnx(onnx_path: str | os.PathLike, backend: str, batches: Sequence[int], config: BenchConfig, graphs: bool = True, transfers: bool = False, store: str | os.PathLike = "engines", threads: int | None = None, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Build the dense and sparse artifacts of one ONNX (same spec but the sparse flag) and
    measure them against each other at every batch size.

    Args:
        onnx_path: a typed ONNX file.
        backend: ``tensorrt`` (GPU) or ``onnxruntime`` (CPU reference: an A/A check, no sparse kernels).
        batches: batch sizes; the TensorRT profile spans min..max of them, optimized for the median.
        config: harness settings.
        graphs: CUDA graphs (TensorRT).
        transfers: include host<->device copies in the timing (TensorRT).
        store: engine store.
        threads: ONNX Runtime intra-op threads.
    """
    onnx_path = Path(onnx_path)
    model = load_onnx(onnx_path, load_external_data=False)  # once: the build, the evidence and the facts below read it
    inputs = input_spec_of(model)
    shapes = {}
    gpu = backend in ("tensorrt", "tensorrt-rtx")
    if gpu:
        lo, hi = min(batches), max(batches)
        opt = sorted(batches)[len(batches) // 2]
        shapes = {t.name: ShapeProfile(min=(lo, *t.shape[1:]), opt=(opt, *t.shape[1:]), max=(hi, *t.shape[1:])) for t in inputs.tensors}
    progress("building dense and sparse artifacts")
    pair = build_pair(onnx_path, BuildSpec(backend=backend, shapes=shapes), store, model=model)
    results, memory = [], {"dense_artifact_bytes": pair.dense.metadata["artifact_bytes"], "sparse_artifact_bytes": pair.sparse.metadata["artifact_bytes"]}
    for batch in batches:
        spec = inputs.with_batch(batch)
        if gpu:
            dense = TrtTimedRunner(pair.dense.artifact, spec, config.buffers, graphs, transfers, "dense", config.seed, backend)
            sparse = TrtTimedRunner(pair.sparse.artifact, spec, config.buffers, graphs, transfers, "sparse", config.seed, backend)
            memory.setdefault("device_memory_bytes", {})[batch] = {"dense": dense.device_memory_bytes(), "sparse": sparse.device_memory_bytes()}
        else:
            dense = OrtTimedRunner(pair.dense.artifact, spec, config.buffers, threads, "dense", config.seed)
            sparse = OrtTimedRunner(pair.sparse.artifact, spec, config.buffers, threads, "sparse", config.seed)
        progress(f"batch {batch}: measuring paired rounds ({config.rounds}" + (f" to {config.max_rounds}, until the interval is within {100 * config.target_width:g}%)" if config.max_rounds > config.rounds else ")"))
        results.append(measure_pair(dense, sparse, batch, config).to_dict())
    evidence = {"dense": pair.dense.report["summary"], "sparse": pair.sparse.report["summary"], "note": pair.sparse.report.get("note", "")}
    notes = []
    if backend == "onnxruntime":
        notes.append("ONNX Runtime on CPU has no 2:4 kernels: dense and sparse run the same computation, so this is an A/A check of the harness; a ratio away from 1.0 is noise.")
    return {
        "benchmark": "pair", "backend": backend, "model": str(onnx_path), "precision": onnx_precision(model),
        "settings": {**config.model_dump(), "graphs": graphs if gpu else None, "transfers": transfers if gpu else None, "timer": "cuda-events" if gpu else "perf_counter", "threads": threads},
        "machine": machine_facts(gpu=gpu), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "amdahl": _amdahl_from_onnx(onnx_path, model), "evidence": evidence, "memory": memory, "results": results, "notes": notes,
        "engines": {"dense": pair.dense.key, "sparse": pair.sparse.key},
    }

