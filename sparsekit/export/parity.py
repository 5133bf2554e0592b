"""ONNX Runtime vs PyTorch on random inputs: max absolute and relative error."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from sparsekit.models.spec import InputSpec


@dataclass
class ParityReport:
    """Agreement of ONNX Runtime with a PyTorch reference.

    Attributes:
        reference: what the ONNX was compared against (e.g. ``sparse fp32 model``).
        batches: batch sizes tried (exercising the dynamic batch axis).
        max_abs: max |ort - torch| over all outputs and trials.
        max_rel: ``max_abs / max |torch|`` (error relative to the output's scale).
        tolerance: the ``max_rel`` limit for this precision.
        passed: ``max_rel <= tolerance``.
    """

    reference: str
    batches: list[int]
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def ort_session(path: str | os.PathLike):
    """A CPU ONNX Runtime session for ``path`` (quiet logging) that computes what the graph says.

    Graph optimizations stay at BASIC (constant folding, redundant-node removal): the EXTENDED/ALL
    levels fuse Q/DQ pairs into ONNX Runtime's integer kernels, whose rounding departs from the
    graph's QuantizeLinear/DequantizeLinear semantics by several % on deep int8 models.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare_onnx_to_torch(path: str | os.PathLike, model: nn.Module, inputs: InputSpec, tolerance: float, reference: str, batches=(1, 3), seed: int = 1234) -> ParityReport:
    """Run ``path`` in ONNX Runtime and ``model`` in PyTorch on the same random inputs.

    Args:
        path: ONNX file (fp32 inputs/outputs, or fp16 with fp32 I/O kept).
        model: the PyTorch reference.
        inputs: its input spec.
        tolerance: max allowed ``max_abs / max|reference|``.
        reference: label for the report.
        batches: batch sizes to try.
        seed: input seed.
    """
    import torch

    session = ort_session(path)
    max_abs, scale = 0.0, 0.0
    for i, b in enumerate(batches):
        tensors = inputs.random(batch=b, seed=seed + i)
        with torch.no_grad():
            ref = model(*tensors)
        refs = [r.float().numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
        feeds = {name: t.numpy() for name, t in zip(inputs.names, tensors)}
        outs = session.run(None, feeds)
        for o, r in zip(outs, refs):
            max_abs = max(max_abs, float(np.max(np.abs(o.astype(np.float32) - r))))
            scale = max(scale, float(np.max(np.abs(r))))
    max_rel = max_abs / scale if scale else max_abs
    return ParityReport(reference, list(batches), max_abs, max_rel, tolerance, bool(max_rel <= tolerance))
