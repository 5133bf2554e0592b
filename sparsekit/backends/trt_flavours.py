"""What differs between TensorRT and TensorRT-RTX, as data in one place.

Both flavours build through the same Polygraphy code (:mod:`sparsekit.backends.trt_build`) and
run through the same runtime code (:mod:`sparsekit.backends.trt_runtime`); everything that
differs between them is a field of :class:`TrtFlavour`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sparsekit.errors import MissingDependencyError, SparsekitError

# Compute capabilities TensorRT-RTX 1.x builds for (its ComputeCapability enum: SM75 ... SM121).
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
# What an engine targets when no compute capability is given (TensorRT-RTX's documented default:
# portable across Ampere and newer RTX GPUs; Turing only when asked for).
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0")


@dataclass(frozen=True)
class TrtFlavour:
    """One TensorRT flavour.

    Attributes:
        backend: the backend name (``tensorrt`` or ``tensorrt-rtx``).
        module: the Python module that holds the bindings.
        title: the product name used in messages.
        polygraphy_rtx: value of ``POLYGRAPHY_USE_TENSORRT_RTX`` for its builds.
        build_needs_gpu: builds time kernels on the local GPU (False: ahead-of-time, CPU is enough).
        kernels_chosen_at_build: the build picks the kernels, so its log and inspector can say which
            layers run sparse (False: they are picked when the engine is first compiled on the GPU).
        timing_cache: the builder uses a timing cache (False: not passed).
        hardware_compat: the builder honours hardware-compatibility levels (False: not passed).
        compute_capabilities: targets ``--compute-capability`` accepts (empty: the build GPU only).
        triton: Triton's ``tensorrt_plan`` backend can load its engines.
        install_fix: what to do when the module is missing.
    """

    backend: str
    module: str
    title: str
    polygraphy_rtx: bool
    build_needs_gpu: bool
    kernels_chosen_at_build: bool
    timing_cache: bool
    hardware_compat: bool
    compute_capabilities: tuple[str, ...]
    triton: bool
    install_fix: str

    def import_module(self):
        """The bindings module, or one clear :class:`MissingDependencyError`."""
        try:
            return importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or OSError when the native libraries are missing
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise MissingDependencyError(f"{self.title} is not usable here ({type(exc).__name__}: {detail})", self.install_fix) from exc

    def targets(self, requested: tuple[str, ...]) -> tuple[str, ...]:
        """The compute capabilities an engine is built for: ``requested``, or the flavour's default."""
        if not self.compute_capabilities:
            return ()
        return tuple(requested) or RTX_DEFAULT_TARGETS


TENSORRT = TrtFlavour(
    backend="tensorrt", module="tensorrt", title="TensorRT", polygraphy_rtx=False, build_needs_gpu=True, kernels_chosen_at_build=True,
    timing_cache=True, hardware_compat=True, compute_capabilities=(), triton=True,
    install_fix="install sparsekit[tensorrt] on a machine with an NVIDIA GPU and driver, or run in an NGC TensorRT container; --backend tensorrt-rtx builds on CPU, --backend onnxruntime runs on CPU",
)
TENSORRT_RTX = TrtFlavour(
    backend="tensorrt-rtx", module="tensorrt_rtx", title="TensorRT-RTX", polygraphy_rtx=True, build_needs_gpu=False, kernels_chosen_at_build=False,
    timing_cache=False, hardware_compat=False, compute_capabilities=RTX_COMPUTE_CAPABILITIES, triton=False,
    install_fix="pip install 'sparsekit[tensorrt-rtx]' (real wheels from the package index; builds need no GPU)",
)
FLAVOURS = {f.backend: f for f in (TENSORRT, TENSORRT_RTX)}


def flavour_of(backend: str) -> TrtFlavour:
    """The flavour of a TensorRT backend name."""
    if backend not in FLAVOURS:
        raise SparsekitError(f"'{backend}' is not a TensorRT backend", f"use one of: {', '.join(FLAVOURS)}")
    return FLAVOURS[backend]
