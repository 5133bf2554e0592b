"""ONNX Runtime (CPU) backend: the reference that runs anywhere.

Its artifact is ONNX Runtime's optimized model saved to disk. ONNX Runtime has no 2:4 sparse
kernels, so a "sparse" build is the same computation; its report says so.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from sparsekit.backends.base import BuildOutput
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.trt_report import SparseKernelReport, onnx_layer_rows
from sparsekit.errors import OnnxModelError, SparsekitError
from sparsekit.backends.onnx_external import external_refs
from sparsekit.onnx_io.load import onnx_model
from sparsekit._lazy import lazy_import

ort = lazy_import("onnxruntime")


class OrtRunner:
    """A CPU InferenceSession over a built artifact."""

    def __init__(self, artifact: Path, threads: int | None = None) -> None:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # already optimized at build
        self.session = ort.InferenceSession(str(artifact), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def close(self) -> None:
        self.session = None


class OnnxRuntimeBackend:
    """``onnxruntime``: CPU build = graph optimization saved to ``model.ort.onnx``."""

    name = "onnxruntime"
    artifact_name = "model.ort.onnx"

    def environment(self) -> dict:
        return {"backend": self.name, "onnxruntime": ort.__version__, "device": "cpu", "machine": platform.machine(), "os": platform.system().lower()}

    def validate(self, onnx_path: Path, spec: BuildSpec, model=None) -> None:
        model = onnx_model(onnx_path if model is None else model)
        names = {i.name for i in model.graph.input}
        unknown = sorted(set(spec.shapes) - names)
        if unknown:
            raise SparsekitError(f"shape profile names input(s) {unknown} that the ONNX does not have", f"use the ONNX input names: {sorted(names)}")

    def build(self, onnx_path: Path, spec: BuildSpec, out_dir: Path, model=None) -> BuildOutput:
        """Optimize the graph into ``out_dir/model.ort.onnx``. An ONNX with external data gets its
        weights written to ``model.ort.onnx.data`` beside the artifact, so the store entry loads
        without the source folder. ``model`` is the ONNX already loaded without its external data
        (None loads it)."""
        model = onnx_model(onnx_path if model is None else model)
        artifact = out_dir / self.artifact_name
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(artifact)
        data_files = []
        if external_refs(model):
            data_files = [out_dir / f"{self.artifact_name}.data"]
            opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", data_files[0].name)
        try:
            ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's InvalidGraph / Fail / NotImplemented
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OnnxModelError(f"ONNX Runtime cannot load '{onnx_path}': {first}", "check the model with 'onnx.checker' and re-export it") from exc
        report = SparseKernelReport(self.name, spec.sparse, False, onnx_layer_rows(onnx_path, model), "ONNX Runtime (CPU) has no 2:4 sparse kernels: no layer runs sparse on this backend; it is the correctness reference.")
        for layer in report.layers:
            layer.eligible = False
            layer.sparse_kernel = False
        return BuildOutput(artifact, report, [], self.environment(), [f for f in data_files if f.is_file()])

    def load(self, artifact: Path) -> OrtRunner:
        return OrtRunner(artifact)
