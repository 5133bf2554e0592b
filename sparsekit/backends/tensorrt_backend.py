"""TensorRT and TensorRT-RTX backends: one class, parameterised by flavour (see trt_flavours).

Builds go through Polygraphy in a child process (:mod:`sparsekit.backends.trt_build`) and are
always strongly typed: the precision comes from the typed ONNX (TensorRT 11 removed the
FP16/INT8 builder flags; on 10.x the STRONGLY_TYPED network flag gives the same behaviour).
Dense and sparse builds differ only in ``SPARSE_WEIGHTS``; STRICT_NANS stays off (it restricts
sparsity). The whole builder log is kept at VERBOSE for the ``(Sparsity)`` lines, and the engine
inspector (DETAILED verbosity) gives per-layer tactics where the engine can be loaded.

``tensorrt`` (10.x, 11.x) builds on and for the local Ampere+ GPU. ``tensorrt-rtx`` builds ahead
of time on any machine, GPU or not, for the compute capabilities in the spec; its kernels, sparse
ones included, are chosen when the engine is first loaded on the target GPU.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

from sparsekit.backends.base import BuildOutput
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.trt_flavours import TENSORRT, TENSORRT_RTX, TrtFlavour
from sparsekit.backends.trt_runtime import TrtRunner
from sparsekit.errors import SparsekitError
from sparsekit.backends.gpu import list_gpus
from sparsekit.backends.onnx_precision import onnx_precision
from sparsekit.backends.trt_build import ENGINE, INSPECTOR, LOG, run_trt_build
from sparsekit.backends.trt_report import build_trt_report

log = logging.getLogger(__name__)

SPARSE_PRECISIONS = ("fp16", "int8", "fp8")


def _cuda_runtime_version() -> str | None:
    """The CUDA runtime version through cuda-python, when it is installed (optional)."""
    try:
        from cuda import cudart
    except ImportError:
        return None
    try:
        return str(cudart.cudaRuntimeGetVersion()[1])
    except Exception as exc:  # no driver: cudart raises instead of returning an error code
        log.debug("CUDA runtime version unreadable: %s", exc)
        return None


class TensorRTBackend:
    """``tensorrt``: an engine (``engine.plan``) and its per-layer sparse-kernel report."""

    flavour: TrtFlavour = TENSORRT
    name = TENSORRT.backend
    artifact_name = "engine.plan"

    @property
    def uses_timing_cache(self) -> bool:
        """Whether builds load and save the store's timing cache."""
        return self.flavour.timing_cache

    def environment(self) -> dict:
        """Runtime version, OS/arch and, where builds time kernels on it, the GPU.

        Raises:
            MissingDependencyError: the flavour's bindings are not installed.
            SparsekitError: a GPU is needed to build and none is visible.
        """
        trt = self.flavour.import_module()
        env = {"backend": self.name, self.flavour.module: trt.__version__, "os": platform.system().lower(), "machine": platform.machine()}
        if self.flavour.build_needs_gpu:
            gpus = list_gpus()
            if not gpus:
                raise SparsekitError("no NVIDIA GPU is visible (NVML found none)", "build TensorRT engines on a host with an NVIDIA GPU and driver; --backend tensorrt-rtx builds on CPU, --backend onnxruntime runs on CPU")
            env["gpu"] = gpus[0].to_dict()
            env["cuda_runtime"] = _cuda_runtime_version()
        return env

    def validate(self, onnx_path: Path, spec: BuildSpec, model=None) -> None:
        """Refuse builds this flavour, these targets or this ONNX cannot do, with the reason."""
        flavour = self.flavour
        if spec.compute_capabilities and not flavour.compute_capabilities:
            raise SparsekitError(f"{flavour.title} builds for the GPU it runs on; target compute capabilities ({', '.join(spec.compute_capabilities)}) are a TensorRT-RTX option", "drop --compute-capability, or build with --backend tensorrt-rtx")
        if spec.hardware_compat != "none" and not flavour.hardware_compat:
            raise SparsekitError(f"{flavour.title} ignores hardware-compatibility levels: its engines run on the compute capabilities they are built for", "drop --hardware-compat and list the targets with --compute-capability")
        env = self.environment()
        if spec.sparse and "gpu" in env and float(env["gpu"]["compute_capability"]) < 8.0:
            gpu = env["gpu"]
            raise SparsekitError(f"{gpu['name']} (compute capability {gpu['compute_capability']}) has no 2:4 sparse Tensor Cores", "sparse builds need Ampere (8.0) or newer; build with --sparse off here")
        turing = [cc for cc in flavour.targets(spec.compute_capabilities) if float(cc) < 8.0]
        if spec.sparse and turing:
            raise SparsekitError(f"compute capability {', '.join(turing)} (Turing) has no 2:4 sparse Tensor Cores", "build the sparse engine for 8.0 and newer, and a Turing engine with --sparse off")
        precision = onnx_precision(onnx_path if model is None else model)
        if spec.sparse and precision not in SPARSE_PRECISIONS:
            raise SparsekitError(f"'{onnx_path}' is an {precision} ONNX: TensorRT runs 2:4 kernels only for fp16/bf16/int8/fp8 (fp32/TF32 use no 2:4 path)", "export --precision fp16 or int8 and build that file")

    def _can_inspect(self, spec: BuildSpec) -> bool:
        """Whether the built engine can be deserialized here for the inspector."""
        if not spec.detailed_profiling:
            return False
        if self.flavour.build_needs_gpu:
            return True

        targets = self.flavour.targets(spec.compute_capabilities)
        return any(g.compute_capability in targets for g in list_gpus())

    def build(self, onnx_path: Path, spec: BuildSpec, out_dir: Path, model=None, timing_cache: Path | None = None) -> BuildOutput:
        """Build ``out_dir/engine.plan`` (in a child process) and its sparse-kernel report.

        Raises:
            OnnxModelError: TensorRT's parser rejected nodes (named in the message).
            EngineBuildError: the builder refused, e.g. a precision a target GPU lacks.
        """
        result = run_trt_build(self.flavour, onnx_path, spec, out_dir, timing_cache if self.uses_timing_cache else None, self._can_inspect(spec))
        log_lines = (out_dir / LOG).read_text(encoding="utf-8", errors="replace").splitlines()
        inspector = (out_dir / INSPECTOR).read_text() if result["inspector"] else None
        report = build_trt_report(onnx_path, log_lines, inspector, spec.sparse, self.flavour, on_target_gpu=result["inspector"], model=model)
        env = self.environment()
        env["build_seconds"] = result["seconds"]
        if self.flavour.compute_capabilities:
            env["compute_capabilities"] = list(self.flavour.targets(spec.compute_capabilities))
        return BuildOutput(out_dir / ENGINE, report, log_lines, env)

    def load(self, artifact: Path) -> TrtRunner:
        """Load an engine for inference (needs a GPU the engine supports)."""
        return TrtRunner(artifact, self.name)


class TensorRTRTXBackend(TensorRTBackend):
    """``tensorrt-rtx``: TensorRT-RTX engines built ahead of time, on CPU if need be, for the
    compute capabilities in the spec (RTX-class GPUs: 7.5, 8.0, 8.6, 8.9, 12.x)."""

    flavour = TENSORRT_RTX
    name = TENSORRT_RTX.backend
