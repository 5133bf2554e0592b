"""Paired dense-vs-sparse benchmarks over a batch sweep, per backend, with the evidence attached:
Amdahl bound from the ONNX/model, sparse-kernel counts (TensorRT) or converted layers (PyTorch),
sizes and memory, machine facts and measurement settings."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from sparsekit.bench.harness import BenchConfig, measure_pair
from sparsekit.bench.machine import machine_facts

log = logging.getLogger(__name__)


def _amdahl_from_onnx(onnx_path: Path) -> dict:
    from sparsekit.analyze.onnx_layers import analyze_onnx
    from sparsekit.analyze.rules import amdahl_bound
    from sparsekit.sparsify.check import check_onnx

    sparse = {layer.name for layer in check_onnx(onnx_path).layers if layer.is_2to4}
    share = sum(layer.flop_share or 0.0 for layer in analyze_onnx(onnx_path).layers if layer.name in sparse)
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
    from sparsekit.backends.build import build_pair
    from sparsekit.backends.spec import BuildSpec, ShapeProfile
    from sparsekit.export.export import input_spec_of

    onnx_path = Path(onnx_path)
    inputs = input_spec_of(onnx_path)
    shapes = {}
    if backend == "tensorrt":
        lo, hi = min(batches), max(batches)
        opt = sorted(batches)[len(batches) // 2]
        shapes = {t.name: ShapeProfile(min=(lo, *t.shape[1:]), opt=(opt, *t.shape[1:]), max=(hi, *t.shape[1:])) for t in inputs.tensors}
    progress("building dense and sparse artifacts")
    pair = build_pair(onnx_path, BuildSpec(backend=backend, shapes=shapes), store)
    results, memory = [], {"dense_artifact_bytes": pair.dense.metadata["artifact_bytes"], "sparse_artifact_bytes": pair.sparse.metadata["artifact_bytes"]}
    for batch in batches:
        spec = inputs.with_batch(batch)
        if backend == "tensorrt":
            from sparsekit.bench.trt_runner import TrtTimedRunner

            dense = TrtTimedRunner(pair.dense.artifact, spec, config.buffers, graphs, transfers, "dense", config.seed)
            sparse = TrtTimedRunner(pair.sparse.artifact, spec, config.buffers, graphs, transfers, "sparse", config.seed)
            memory.setdefault("device_memory_bytes", {})[batch] = {"dense": dense.device_memory_bytes(), "sparse": sparse.device_memory_bytes()}
        else:
            from sparsekit.bench.ort_runner import OrtTimedRunner

            dense = OrtTimedRunner(pair.dense.artifact, spec, config.buffers, threads, "dense", config.seed)
            sparse = OrtTimedRunner(pair.sparse.artifact, spec, config.buffers, threads, "sparse", config.seed)
        progress(f"batch {batch}: measuring {config.rounds} paired rounds")
        results.append(measure_pair(dense, sparse, batch, config).to_dict())
    evidence = {"dense": pair.dense.report["summary"], "sparse": pair.sparse.report["summary"], "note": pair.sparse.report.get("note", "")}
    notes = []
    if backend == "onnxruntime":
        notes.append("ONNX Runtime on CPU has no 2:4 kernels: dense and sparse run the same computation, so this is an A/A check of the harness; a ratio away from 1.0 is noise.")
    return {
        "benchmark": "pair", "backend": backend, "model": str(onnx_path), "precision": _precision(onnx_path),
        "settings": {**config.model_dump(), "graphs": graphs if backend == "tensorrt" else None, "transfers": transfers if backend == "tensorrt" else None, "timer": "cuda-events" if backend == "tensorrt" else "perf_counter", "threads": threads},
        "machine": machine_facts(gpu=backend == "tensorrt"), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "amdahl": _amdahl_from_onnx(onnx_path), "evidence": evidence, "memory": memory, "results": results, "notes": notes,
        "engines": {"dense": pair.dense.key, "sparse": pair.sparse.key},
    }


def _precision(onnx_path: Path) -> str:
    from sparsekit.backends.onnx_precision import onnx_precision

    return onnx_precision(onnx_path)


def bench_torch_sparse(loaded, batches: Sequence[int], config: BenchConfig, dtype: str = "float16", graphs: bool = True, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Dense (masked weights, dense kernels) vs semi-structured 2:4 kernels of the same PyTorch model on CUDA.

    Raises:
        SparsekitError: no CUDA GPU, or one older than Ampere.
    """
    import torch

    from sparsekit.analyze.rules import amdahl_bound
    from sparsekit.analyze.torch_layers import analyze_model
    from sparsekit.bench.torch_sparse import TorchCudaRunner, plain_model, to_semi_structured_
    from sparsekit.errors import SparsekitError

    if not torch.cuda.is_available():
        raise SparsekitError("the torch_sparse backend needs a CUDA GPU and none is available", "run on an Ampere+ GPU host, or use --backend onnxruntime on CPU")
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise SparsekitError(f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}) has no 2:4 sparse Tensor Cores", "use an Ampere (8.0) or newer GPU")
    tdtype = getattr(torch, dtype)
    dense_model = plain_model(loaded.model).to("cuda", tdtype).eval()
    sparse_model = plain_model(loaded.model).to("cuda", tdtype).eval()
    conversion = to_semi_structured_(sparse_model, dtype)
    shares = {layer.name: layer.flop_share or 0.0 for layer in analyze_model(loaded).layers}
    share = sum(shares.get(n, 0.0) for n in conversion.converted)
    results, peak = [], {}
    for batch in batches:
        spec = loaded.inputs.with_batch(batch)
        progress(f"batch {batch}: capturing and measuring")
        torch.cuda.reset_peak_memory_stats()
        dense = TorchCudaRunner(dense_model, spec, dtype, config.buffers, graphs, "dense", config.seed)
        sparse = TorchCudaRunner(sparse_model, spec, dtype, config.buffers, graphs, "sparse", config.seed)
        with torch.no_grad():
            x = spec.random(seed=99)
            x = tuple(t.to("cuda", tdtype if t.is_floating_point() else t.dtype) for t in x)
            err = (dense_model(*x).float() - sparse_model(*x).float()).abs().max().item()
            scale = dense_model(*x).float().abs().max().item() or 1.0
        results.append({**measure_pair(dense, sparse, batch, config).to_dict(), "max_rel_err_sparse_vs_dense": err / scale})
        peak[batch] = torch.cuda.max_memory_allocated()
    return {
        "benchmark": "pair", "backend": "torch_sparse", "model": loaded.name, "precision": dtype,
        "settings": {**config.model_dump(), "graphs": graphs, "transfers": False, "timer": "cuda-events", "torch": torch.__version__, "semi_structured_backend": "cuSPARSELt" if torch.backends.cusparselt.is_available() else "CUTLASS"},
        "machine": machine_facts(gpu=True), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "amdahl": {"sparse_flop_share": round(share, 4), "bound": round(amdahl_bound(share), 4), "sparse_layers_in_onnx": None},
        "evidence": {"converted_linear_layers": len(conversion.converted), "not_converted": conversion.skipped},
        "memory": {"dense_weight_bytes": conversion.dense_weight_bytes, "sparse_weight_bytes": conversion.sparse_weight_bytes, "peak_gpu_bytes_by_batch": peak},
        "results": results, "notes": ["PyTorch runs 2:4 only for Linear layers; convolutions stay dense on this backend."],
    }
