"""Speed-aware layer selection: sparsify only layers whose 2:4 GEMM is measurably faster.

Each eligible layer's GEMM (at the user's batch and precision) is timed dense vs 2:4 on the
target GPU; layers faster by at least ``margin`` go into the include list, the rest stay dense and
pay no accuracy cost. ``sparsekit sparsify --include-from`` and recipes take the list directly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.bench.harness import BenchConfig
from sparsekit.errors import SparsekitError
from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.bench.gemm import layer_gemm_shape, time_gemm
from sparsekit.bench.machine import machine_facts


def select_layers_by_speed(loaded, batch: int, config: BenchConfig, margin: float = 1.05, dtype: str = "float16", progress: Callable[[str], None] = lambda m: None, cache: dict | None = None) -> dict:
    """Time every sparsifiable layer's GEMM and decide include/exclude.

    Layers of one GEMM shape (a transformer's 12 or 24 identical blocks) are timed once: the
    timing is cached by ``(M, K, N, dtype)`` in ``cache`` (pass a dict to share it across calls).

    Returns:
        ``{"include": [...], "exclude": [...], "margin", "batch", "measurements": [...], "machine"}``.

    Raises:
        SparsekitError: no CUDA GPU or one older than Ampere.
    """
    import torch

    if not torch.cuda.is_available():
        raise SparsekitError("speed-aware selection measures on the target GPU and no CUDA GPU is available", "run 'sparsekit select' on the Ampere+ GPU you will deploy on")
    if torch.cuda.get_device_capability()[0] < 8:
        raise SparsekitError(f"{torch.cuda.get_device_name()} has no 2:4 sparse Tensor Cores", "use an Ampere (8.0) or newer GPU")
    analysis = analyze_model(type(loaded)(loaded.model, loaded.inputs.with_batch(batch), loaded.source))
    cache = {} if cache is None else cache
    rows, include, exclude = [], [], []
    for layer in analysis.layers:
        if not (layer.trt["ok"] and layer.magnitude["ok"]) or not layer.gemm_rows:
            continue
        shape = layer_gemm_shape(layer.name, layer.kind, layer.shape, layer.gemm_rows)
        if shape.k % 64 or shape.n % 32:
            exclude.append(layer.name)
            rows.append({"name": layer.name, "m": shape.m, "k": shape.k, "n": shape.n, "decision": "exclude", "reason": "shape below the semi-structured kernel's alignment"})
            continue
        key = (shape.m, shape.k, shape.n, dtype)
        cached = key in cache
        if not cached:
            progress(f"{layer.name}: GEMM {shape.m}x{shape.k}x{shape.n}")
            try:
                cache[key] = time_gemm(shape, config, dtype)
            except RuntimeError as exc:  # the 2:4 kernels refuse this shape: the layer stays dense
                cache[key] = f"2:4 kernels failed at this shape ({str(exc).splitlines()[0][:200]})"
        result = cache[key]
        if isinstance(result, str):
            exclude.append(layer.name)
            rows.append({"name": layer.name, "m": shape.m, "k": shape.k, "n": shape.n, "decision": "exclude", "reason": result})
            continue
        ratio = result.pair.speedup
        keep = wins(ratio, margin)
        (include if keep else exclude).append(layer.name)
        rows.append({"name": layer.name, "m": shape.m, "k": shape.k, "n": shape.n, "dense_ms": result.pair.dense.median, "sparse_ms": result.pair.sparse.median, "speedup": ratio.to_dict(), "timing": result.method, "cached": cached, "decision": "include" if keep else "exclude", "flop_share": layer.flop_share})
    return {"model": loaded.name, "batch": batch, "dtype": dtype, "margin": margin, "rule": "include when the lower bound of the speedup interval >= margin", "include": include, "exclude": exclude, "measurements": rows, "machine": machine_facts(gpu=True), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def wins(speedup, margin: float) -> bool:
    """A layer runs 2:4 when its measured speedup clears ``margin``: the interval's lower bound
    over several paired rounds (noise cannot buy a layer in), the ratio itself with one round."""
    return speedup.low >= margin if speedup.rounds > 1 else speedup.ratio >= margin


def write_selection(selection: dict, path: str | os.PathLike) -> Path:
    return write_json_atomic(path, selection)
