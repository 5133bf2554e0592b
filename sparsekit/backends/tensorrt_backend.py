"""TensorRT backend, built on Polygraphy's loaders (works with TensorRT 10.x and 11.x).

Builds are always strongly typed: the precision comes from the typed ONNX (TensorRT 11 removed
the FP16/INT8 builder flags; on 10.x the STRONGLY_TYPED network flag gives the same behaviour).
Dense and sparse builds differ only in ``SPARSE_WEIGHTS``. STRICT_NANS stays off (it restricts
sparsity). The builder log is captured at INFO severity for the two ``(Sparsity)`` lines, and
the engine inspector (DETAILED verbosity) gives per-layer tactics.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from sparsekit.backends.base import BuildOutput
from sparsekit.backends.spec import BuildSpec
from sparsekit.errors import MissingDependencyError, OnnxModelError, SparsekitError

log = logging.getLogger(__name__)

SPARSE_PRECISIONS = ("fp16", "int8", "fp8")


def import_tensorrt():
    """``import tensorrt`` or a clear :class:`MissingDependencyError`."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        raise MissingDependencyError(f"TensorRT is not usable here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", "install sparsekit[tensorrt] on a machine with an NVIDIA GPU and driver, or run in an NGC TensorRT container; --backend onnxruntime works on CPU") from exc
    return trt


class CapturingTrtLogger:
    """Factory of an ``ILogger`` that keeps every message at INFO or above and forwards to logging."""

    @staticmethod
    def create():
        trt = import_tensorrt()

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.lines: list[str] = []

            def log(self, severity, msg):  # noqa: D401 - TensorRT callback, must not raise
                try:
                    if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR, trt.ILogger.Severity.WARNING, trt.ILogger.Severity.INFO):
                        self.lines.append(f"[{severity.name}] {msg}")
                    level = logging.WARNING if severity in (trt.ILogger.Severity.WARNING,) else logging.ERROR if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR) else logging.DEBUG
                    log.log(level, "tensorrt: %s", msg)
                except Exception:  # pragma: no cover - never raise into TensorRT
                    pass

        return _Logger()


class TrtRunner:
    """A deserialized engine run through Polygraphy's TrtRunner (synchronous, host arrays)."""

    def __init__(self, artifact: Path) -> None:
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.backend.trt import TrtRunner as _PolyRunner

        self._runner = _PolyRunner(EngineFromBytes(artifact.read_bytes()))
        self._runner.activate()
        self.input_names = [name for name in self._runner.get_input_metadata()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._runner.infer(feeds, copy_outputs_to_host=True)
        return [np.asarray(v) for v in out.values()]

    def close(self) -> None:
        self._runner.deactivate()


class TensorRTBackend:
    """``tensorrt``: engine (``engine.plan``) + per-layer sparse-kernel report."""

    name = "tensorrt"
    artifact_name = "engine.plan"

    def environment(self) -> dict:
        import platform

        from sparsekit.backends.gpu import list_gpus

        trt = import_tensorrt()
        gpus = list_gpus()
        if not gpus:
            raise SparsekitError("no NVIDIA GPU is visible (NVML found none)", "build TensorRT engines on a host with an NVIDIA GPU and driver; --backend onnxruntime works on CPU")
        gpu = gpus[0]
        cuda = None
        try:
            from cuda import cudart  # cuda-python, optional

            cuda = str(cudart.cudaRuntimeGetVersion()[1])
        except Exception:
            pass
        return {"backend": self.name, "tensorrt": trt.__version__, "cuda_runtime": cuda, "gpu": gpu.to_dict(), "os": platform.system().lower(), "machine": platform.machine()}

    def validate(self, onnx_path: Path, spec: BuildSpec) -> None:
        from sparsekit.backends.onnx_precision import onnx_precision

        env = self.environment()
        cc = float(env["gpu"]["compute_capability"])
        if spec.sparse and cc < 8.0:
            raise SparsekitError(f"{env['gpu']['name']} (compute capability {cc}) has no 2:4 sparse Tensor Cores", "sparse builds need Ampere (8.0) or newer; build with --sparse off here")
        precision = onnx_precision(onnx_path)
        if spec.sparse and precision not in SPARSE_PRECISIONS:
            raise SparsekitError(f"'{onnx_path}' is an {precision} ONNX: TensorRT runs 2:4 kernels only for fp16/bf16/int8/fp8 (fp32/TF32 use no 2:4 path)", "export --precision fp16 or int8 and build that file")

    def _config(self, spec: BuildSpec, cache: Path | None):
        from polygraphy.backend.trt import CreateConfig, Profile

        trt = import_tensorrt()
        profiles = None
        if spec.shapes:
            profile = Profile()
            for name, p in spec.shapes.items():
                profile.add(name, min=p.min, opt=p.opt, max=p.max)
            profiles = [profile]
        kwargs = {
            "sparse_weights": spec.sparse,
            "profiles": profiles,
            "memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: spec.workspace_mib << 20},
            "builder_optimization_level": spec.opt_level,
            "load_timing_cache": str(cache) if cache and cache.exists() else None,
        }
        if spec.detailed_profiling:
            kwargs["profiling_verbosity"] = trt.ProfilingVerbosity.DETAILED
        if spec.hardware_compat == "ampere_plus":
            kwargs["hardware_compatibility_level"] = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        return CreateConfig(**kwargs)

    def build(self, onnx_path: Path, spec: BuildSpec, out_dir: Path, timing_cache: Path | None = None) -> BuildOutput:
        import polygraphy.backend.trt.util as poly_trt_util
        from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
        from polygraphy.exception import PolygraphyException

        from sparsekit.backends.trt_report import build_trt_report

        trt = import_tensorrt()
        logger = CapturingTrtLogger.create()
        previous = poly_trt_util.TRT_LOGGER
        poly_trt_util.TRT_LOGGER = logger  # Polygraphy's loaders fetch the logger through get_trt_logger()
        try:
            network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
            start = time.perf_counter()
            try:
                engine_bytes = EngineBytesFromNetwork(network, self._config(spec, timing_cache), save_timing_cache=str(timing_cache) if timing_cache else None)()
            except PolygraphyException as exc:
                errors = parse_onnx_errors(onnx_path)
                detail = "; ".join(errors[:5]) if errors else str(exc).splitlines()[0]
                raise OnnxModelError(f"TensorRT could not build '{onnx_path}': {detail}", "see the node(s) named; re-export with a supported opset or replace those ops") from exc
            seconds = time.perf_counter() - start
        finally:
            poly_trt_util.TRT_LOGGER = previous
        artifact = out_dir / self.artifact_name
        artifact.write_bytes(bytes(engine_bytes))
        inspector_json = None
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(bytes(engine_bytes))
        if engine is not None and spec.detailed_profiling:
            inspector = engine.create_engine_inspector()
            inspector_json = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
            (out_dir / "inspector.json").write_text(inspector_json)
        report = build_trt_report(onnx_path, logger.lines, inspector_json, spec.sparse)
        env = self.environment()
        env["build_seconds"] = round(seconds, 2)
        return BuildOutput(artifact, report, logger.lines, env)

    def load(self, artifact: Path) -> TrtRunner:
        import_tensorrt()
        return TrtRunner(artifact)


def parse_onnx_errors(onnx_path: Path) -> list[str]:
    """Parse the ONNX with TensorRT's own parser and list its errors per node."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if ok:
        return []
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = f"node {err.node()} ({err.node_name()}, {err.node_operator()})" if hasattr(err, "node_name") else f"node {err.node()}"
        out.append(f"{where}: {err.desc()}")
    return out
