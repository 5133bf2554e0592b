"""Backends by name. A backend whose heavy dependency is missing still registers; it explains
what to install when used (``environment()`` raises MissingDependencyError).

Two kinds: engine backends build and run an ONNX file (dense and sparse engines of one file);
model backends run the PyTorch model itself (``torch_sparse``: PyTorch's semi-structured 2:4
tensors on cuSPARSELt), so they take a model or checkpoint instead of an ONNX."""

from __future__ import annotations

from sparsekit.errors import SparsekitError

_BACKENDS = {
    "onnxruntime": ("sparsekit.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("sparsekit.backends.tensorrt_backend", "TensorRTBackend"),
    "tensorrt-rtx": ("sparsekit.backends.tensorrt_backend", "TensorRTRTXBackend"),
}


_MODEL_BACKENDS = {
    "torch_sparse": ("sparsekit.bench.torch_pair", "bench_torch_sparse"),
}
"""Backends that run the PyTorch model: name -> (module, benchmark function)."""


def backend_names(kind: str | None = None) -> list[str]:
    """Registered backends: ``engine`` (ONNX in), ``model`` (PyTorch model in), or all (None)."""
    engines, models = list(_BACKENDS), list(_MODEL_BACKENDS)
    return engines if kind == "engine" else models if kind == "model" else engines + models


def is_model_backend(name: str) -> bool:
    """Whether backend ``name`` runs the PyTorch model (takes a model or checkpoint, not an ONNX)."""
    return name in _MODEL_BACKENDS


def get_model_benchmark(name: str):
    """The benchmark function of model backend ``name`` (imports only its module)."""
    import importlib

    if name not in _MODEL_BACKENDS:
        raise SparsekitError(f"unknown model backend '{name}'", f"use one of: {', '.join(_MODEL_BACKENDS)}")
    module, fn = _MODEL_BACKENDS[name]
    return getattr(importlib.import_module(module), fn)


def get_backend(name: str):
    """Instantiate backend ``name`` (imports only its module, not its runtime)."""
    import importlib

    if name not in _BACKENDS:
        kind = " (it runs the PyTorch model: give 'sparsekit bench' a model or checkpoint)" if name in _MODEL_BACKENDS else ""
        raise SparsekitError(f"unknown engine backend '{name}'{kind}", f"use one of: {', '.join(_BACKENDS)}")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()
