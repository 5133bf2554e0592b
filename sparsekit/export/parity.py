"""ONNX Runtime vs PyTorch on random inputs: max absolute and relative error.

Quantized models need a second yardstick. Each Q/DQ pair alone matches ModelOpt's fake
quantization to float precision, but where two float computations differ by one ulp at a rounding
boundary, one int8 value moves a whole quantization step, and in a deep model those steps compound
until ONNX Runtime and PyTorch are two different draws of the model's INT8 rounding noise (on the
6-layer MiniLM: 9% relative L2 distance between them, with 18% between the fake-quant and the float
model; on a randomly initialised 12-layer bert-base: 3.1% and 2.8%). A quantized export therefore
also passes when ONNX Runtime is no further from PyTorch than two independent draws of that noise
would be (:data:`NOISE_FACTOR`); a wrong graph (wrong scales, a broken layer) lands outside it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from sparsekit.models.spec import InputSpec


NOISE_FACTOR = 2**0.5
"""A quantized ONNX passes when its relative L2 distance to the fake-quant model is at most this
multiple of the fake-quant model's own distance to the same model without quantizers: two
independent roundings of the same size are sqrt(2) times that distance apart."""


@dataclass
class ParityReport:
    """Agreement of ONNX Runtime with a PyTorch reference.

    Attributes:
        reference: what the ONNX was compared against (e.g. ``sparse fp32 model``).
        batches: batch sizes tried (exercising the dynamic batch axis).
        max_abs: max |ort - torch| over all outputs and trials.
        max_rel: ``max_abs / max |torch|`` (error relative to the output's scale).
        tolerance: the ``max_rel`` limit for this precision.
        passed: ``max_rel <= tolerance``, or for a quantized model ``rel_l2 <= NOISE_FACTOR * noise_rel_l2``.
        rel_l2: ``||ort - torch|| / ||torch||`` over all outputs and trials.
        noise_rel_l2: for a quantized reference, the same distance between it and itself with its
            quantizers off (the size of its rounding noise); None otherwise.
    """

    reference: str
    batches: list[int]
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool
    rel_l2: float = 0.0
    noise_rel_l2: float | None = None

    def reason(self) -> str:
        """Why it failed, in one clause."""
        text = f"max relative error {self.max_rel:.2e} > {self.tolerance:.0e}"
        if self.noise_rel_l2 is not None:
            text += f", and its relative L2 distance {self.rel_l2:.2e} exceeds {NOISE_FACTOR:.2f}x the model's own INT8 rounding noise ({self.noise_rel_l2:.2e})"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


def parity_text(parity: dict) -> str:
    """A table cell for a :class:`ParityReport` dict: ``max_rel (limit)``, and for a quantized model
    that did not match to the limit, its L2 distance next to its rounding noise."""
    text = f"{parity['max_rel']:.1e} ({parity['tolerance']:.0e})"
    if parity.get("noise_rel_l2") is not None and parity["max_rel"] > parity["tolerance"]:
        text += f"; L2 {parity['rel_l2']:.1e} vs INT8 noise {parity['noise_rel_l2']:.1e}"
    return text


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
        model: the PyTorch reference; when it holds enabled ModelOpt quantizers, it is also run
            with them off to measure its rounding noise (see the module docstring).
        inputs: its input spec.
        tolerance: max allowed ``max_abs / max|reference|``.
        reference: label for the report.
        batches: batch sizes to try.
        seed: input seed.
    """
    session = ort_session(path)
    max_abs, scale = 0.0, 0.0
    diff_sq, ref_sq, noise_sq = 0.0, 0.0, 0.0
    quantizers = _enabled_quantizers(model)
    for i, b in enumerate(batches):
        tensors = inputs.random(batch=b, seed=seed + i)
        refs = _run(model, tensors)
        feeds = {name: t.numpy() for name, t in zip(inputs.names, tensors)}
        outs = session.run(None, feeds)
        for o, r in zip(outs, refs):
            d = o.astype(np.float32) - r
            max_abs = max(max_abs, float(np.max(np.abs(d))))
            scale = max(scale, float(np.max(np.abs(r))))
            diff_sq += float(np.sum(d.astype(np.float64) ** 2))
            ref_sq += float(np.sum(r.astype(np.float64) ** 2))
        if quantizers:
            for q in quantizers:
                q.disable()
            try:
                floats = _run(model, tensors)
            finally:
                for q in quantizers:
                    q.enable()
            noise_sq += sum(float(np.sum((f.astype(np.float64) - r) ** 2)) for f, r in zip(floats, refs))
    max_rel = max_abs / scale if scale else max_abs
    rel_l2 = (diff_sq / ref_sq) ** 0.5 if ref_sq else diff_sq**0.5
    noise = (noise_sq / ref_sq) ** 0.5 if quantizers and ref_sq else None
    passed = max_rel <= tolerance or (noise is not None and rel_l2 <= NOISE_FACTOR * noise)
    return ParityReport(reference, list(batches), max_abs, max_rel, tolerance, bool(passed), rel_l2, noise)


def _run(model: nn.Module, tensors) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*tensors)
    return [r.float().numpy() for r in (out if isinstance(out, (tuple, list)) else (out,))]


def _enabled_quantizers(model: nn.Module) -> list:
    """The model's enabled ModelOpt ``TensorQuantizer`` modules (none without ModelOpt state)."""
    return [m for m in model.modules() if type(m).__name__ == "TensorQuantizer" and getattr(m, "is_enabled", False)]
