"""Backends by name. A backend whose heavy dependency is missing still registers; it explains
what to install when used (``environment()`` raises MissingDependencyError)."""

from __future__ import annotations

from sparsekit.errors import SparsekitError

_BACKENDS = {
    "onnxruntime": ("sparsekit.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("sparsekit.backends.tensorrt_backend", "TensorRTBackend"),
    "tensorrt-rtx": ("sparsekit.backends.tensorrt_backend", "TensorRTRTXBackend"),
}


def backend_names() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str):
    """Instantiate backend ``name`` (imports only its module, not its runtime)."""
    import importlib

    if name not in _BACKENDS:
        raise SparsekitError(f"unknown backend '{name}'", f"use one of: {', '.join(_BACKENDS)}")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()
