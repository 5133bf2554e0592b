"""Load, run and inspect built TensorRT and TensorRT-RTX engines, with torch as the CUDA layer.

Device buffers, streams and events come from torch rather than pycuda: the process keeps one
CUDA context (torch's primary context, which TensorRT shares) instead of two that fight over the
current context, and TensorRT's own samples have moved from pycuda to cuda-python anyway.
TensorRT-RTX compiles an engine's kernels for the GPU when it is loaded, so loading one is where
its sparse-kernel choices become visible (its log's ``(Sparsity)`` lines and the inspector).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsekit.backends.trt_flavours import TrtFlavour, flavour_of
from sparsekit.backends.trt_logger import clean_trt_error, error_lines, make_trt_logger
from sparsekit.errors import EngineLoadError
from sparsekit.backends.trt_report import build_trt_report

_TORCH_DTYPE = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}
_LOAD_FIX = {
    "tensorrt": "load it with the TensorRT version and on the GPU architecture that built it, or rebuild it here",
    "tensorrt-rtx": "load it on an RTX-class GPU of a compute capability it was built for (7.5, 8.0, 8.6, 8.9, 12.x; not 9.0) with a current driver",
}


def torch_dtype(trt_dtype):
    """The torch dtype of a TensorRT ``DataType`` (matched by name, so both flavours work)."""
    import torch

    name = trt_dtype.name
    if name not in _TORCH_DTYPE:
        raise EngineLoadError(f"engine tensor type {name} has no torch equivalent here", "export the model with fp32/fp16/int8/int64 inputs and outputs")
    return getattr(torch, _TORCH_DTYPE[name])


@dataclass
class LoadedEngine:
    """A deserialized engine and what TensorRT logged while loading it.

    Attributes:
        flavour: TensorRT or TensorRT-RTX.
        trt: the bindings module.
        runtime: the ``Runtime`` (kept alive as long as the engine).
        engine: the ``ICudaEngine``.
        log: every message TensorRT emitted so far, ``"[SEVERITY] message"``.
    """

    flavour: TrtFlavour
    trt: object
    runtime: object
    engine: object
    log: list[str] = field(default_factory=list)
    _logger: object = None


def load_engine(artifact: str | Path, backend: str = "tensorrt") -> LoadedEngine:
    """Deserialize a plan with the backend's runtime.

    Raises:
        MissingDependencyError: the flavour's bindings are not installed.
        EngineLoadError: the file is missing, or the runtime refused it (TensorRT's reason, one line).
    """
    flavour = flavour_of(backend)
    path = Path(artifact)
    if not path.is_file():
        raise EngineLoadError(f"engine file '{path}' does not exist", "build it first ('sparsekit build'), or check the path")
    trt = flavour.import_module()
    lines: list[str] = []
    logger = make_trt_logger(trt, lines.append)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        reasons = [clean_trt_error(e) for e in error_lines(lines)] or ["deserialization failed"]
        raise EngineLoadError(f"{flavour.title} cannot load '{path}': {reasons[0]}", _LOAD_FIX[flavour.backend])
    return LoadedEngine(flavour, trt, runtime, engine, lines, logger)


class TrtRunner:
    """One engine and execution context; runs host arrays through torch device buffers.

    Args:
        artifact: the serialized engine.
        backend: ``tensorrt`` or ``tensorrt-rtx``.
    """

    def __init__(self, artifact: str | Path, backend: str = "tensorrt") -> None:
        self.loaded = load_engine(artifact, backend)
        trt, engine = self.loaded.trt, self.loaded.engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; ``feeds`` maps input names to arrays (batch first); returns outputs in engine order."""
        import torch

        engine = self.loaded.engine
        inputs = {}
        for name in self.input_names:
            inputs[name] = torch.as_tensor(np.ascontiguousarray(feeds[name])).to("cuda", torch_dtype(engine.get_tensor_dtype(name)))
            self.context.set_input_shape(name, tuple(inputs[name].shape))
            self.context.set_tensor_address(name, inputs[name].data_ptr())
        outputs = {}
        for name in self.output_names:
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), device="cuda", dtype=torch_dtype(engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        ok = self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        if not ok:
            reasons = [clean_trt_error(e) for e in error_lines(self.loaded.log)] or ["execute_async_v3 returned False"]
            raise EngineLoadError(f"{self.loaded.flavour.title} could not run the engine: {reasons[-1]}", "check the input shapes against the engine's optimization profile")
        return [(t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy() for t in outputs.values()]

    def close(self) -> None:
        """Free the context and the engine."""
        self.context = None
        self.loaded = None


def inspect_engine(artifact: str | Path, backend: str = "tensorrt") -> tuple[str, list[str]]:
    """The engine inspector's JSON and TensorRT's log of loading the engine on this GPU.

    For TensorRT-RTX the load compiles the kernels for this GPU, so the log is where its
    ``(Sparsity)`` lines appear. Needs a GPU the engine supports.
    """
    loaded = load_engine(artifact, backend)
    loaded.engine.create_execution_context()  # kernels may be specialised when the first context is made
    info = loaded.engine.create_engine_inspector().get_engine_information(loaded.trt.LayerInformationFormat.JSON)
    return info, list(loaded.log)


def sparse_report_on_this_gpu(artifact: str | Path, onnx_path: str | Path, backend: str, sparse_requested: bool):
    """The per-layer sparse-kernel report of an engine as loaded on this GPU (inspector + load log).

    This is the evidence for TensorRT-RTX engines, whose kernels are chosen at load time.
    """
    info, log = inspect_engine(artifact, backend)
    return build_trt_report(onnx_path, log, info, sparse_requested, flavour_of(backend), on_target_gpu=True)
