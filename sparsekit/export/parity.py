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
from dataclasses import asdict, dataclass, field

import numpy as np
from torch import nn

from sparsekit.errors import ExportError
from sparsekit.input_spec import InputSpec
from sparsekit.models.outputs import output_tensors
from sparsekit._lazy import lazy_import

ort = lazy_import("onnxruntime")


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
        max_rel: the worst output's ``max |ort - torch| / max |torch|`` (error relative to that
            output's scale).
        tolerance: the ``max_rel`` limit for this precision.
        passed: ``max_rel <= tolerance``, or for a quantized model ``rel_l2 <= NOISE_FACTOR * noise_rel_l2``.
        rel_l2: ``||ort - torch|| / ||torch||`` over all outputs and trials.
        noise_rel_l2: for a quantized reference, the same distance between it and itself with its
            quantizers off (the size of its rounding noise); None otherwise.
        sizes: the dynamic axis sizes of each trial (``[{"batch": 1, "sequence": 128}, ...]``):
            every trial after the first also changes the non-batch dynamic axes.
        outputs: ``max_rel`` of each output, by ONNX output name.
        worst_output: the output with the largest ``max_rel``.
    """

    reference: str
    batches: list[int]
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool
    rel_l2: float = 0.0
    noise_rel_l2: float | None = None
    sizes: list[dict] = field(default_factory=list)
    outputs: dict[str, float] = field(default_factory=dict)
    worst_output: str = ""

    def reason(self) -> str:
        """Why it failed, in one clause."""
        where = f" (output '{self.worst_output}')" if len(self.outputs) > 1 else ""
        text = f"max relative error {self.max_rel:.2e}{where} > {self.tolerance:.0e}"
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

    Graph optimizations stay at BASIC (redundant-node removal): the EXTENDED/ALL levels fuse Q/DQ
    pairs into ONNX Runtime's integer kernels, whose rounding departs from the graph's
    QuantizeLinear/DequantizeLinear semantics by several % on deep int8 models. Constant folding
    is off: it would store a dequantized fp32 copy of every int8 weight next to it (2.5x the fp32
    weight bytes instead of 1.3x for an int8 BERT-base); the outputs are the same.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantFolding"])


def trial_sizes(inputs: InputSpec, batches) -> list[dict[str, int]]:
    """Dynamic axis sizes per trial: the batch from ``batches``; the first trial keeps the other
    dynamic axes (e.g. the sequence) as declared, later ones halve them (a second length)."""
    base = inputs.dynamic_sizes()
    other = {label: size // 2 if size > 1 else size + 1 for label, size in base.items()}
    return [{"batch": int(b), **(base if i == 0 else other)} for i, b in enumerate(batches)]


def compare_onnx_to_torch(path: str | os.PathLike, model: nn.Module, inputs: InputSpec, tolerance: float, reference: str, batches=(1, 3), seed: int = 1234) -> ParityReport:
    """Run ``path`` in ONNX Runtime and ``model`` in PyTorch on the same random inputs.

    Every output is compared (by position, named after the ONNX outputs); the report gives the
    worst. Each trial uses its own batch size, and trials after the first also change the other
    dynamic axes (a second sequence length), so the ONNX's dynamic axes are exercised.

    Args:
        path: ONNX file (fp32 inputs/outputs, or fp16 with fp32 I/O kept).
        model: the PyTorch reference (called as ``model(*tensors)``; see
            :mod:`sparsekit.models.adapter`); when it holds enabled ModelOpt quantizers, it is also
            run with them off to measure its rounding noise (see the module docstring).
        inputs: its input spec.
        tolerance: max allowed ``max_abs / max|reference|`` of every output.
        reference: label for the report.
        batches: batch sizes to try.
        seed: input seed.
    """
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]
    max_abs = 0.0
    per_abs: dict[str, float] = {n: 0.0 for n in names}
    per_scale: dict[str, float] = {n: 0.0 for n in names}
    diff_sq, ref_sq, noise_sq = 0.0, 0.0, 0.0
    quantizers = _enabled_quantizers(model)
    sizes = trial_sizes(inputs, batches)
    for i, trial in enumerate(sizes):
        tensors = inputs.random(seed=seed + i, sizes=trial)
        refs = _run(model, tensors)
        feeds = {name: t.numpy() for name, t in zip(inputs.names, tensors)}
        outs = session.run(None, feeds)
        if len(outs) != len(refs):
            raise ExportError(f"the ONNX has {len(outs)} outputs and the PyTorch model returned {len(refs)}", "re-export the model; its outputs must not depend on the input values")
        for name, o, r in zip(names, outs, refs):
            d = _difference(o.astype(np.float32), r)
            worst = float(np.max(np.abs(d))) if d.size else 0.0
            max_abs = max(max_abs, worst)
            per_abs[name] = max(per_abs[name], worst)
            per_scale[name] = max(per_scale[name], float(np.max(np.abs(r))) if r.size else 0.0)
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
    per_rel = {n: per_abs[n] / per_scale[n] if per_scale[n] else per_abs[n] for n in names}
    worst_output = max(per_rel, key=per_rel.get) if per_rel else ""
    max_rel = per_rel.get(worst_output, 0.0)
    rel_l2 = (diff_sq / ref_sq) ** 0.5 if ref_sq else diff_sq**0.5
    noise = (noise_sq / ref_sq) ** 0.5 if quantizers and ref_sq else None
    passed = max_rel <= tolerance or (noise is not None and rel_l2 <= NOISE_FACTOR * noise)
    return ParityReport(reference, list(batches), max_abs, max_rel, tolerance, bool(passed), rel_l2, noise, sizes, per_rel, worst_output)


def _difference(onnx_out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``onnx_out - ref``, 0 where both are NaN (or the same infinity), and infinite where only one
    side is NaN: a NaN never passes as a match by being left out of a maximum."""
    with np.errstate(invalid="ignore"):
        d = onnx_out - ref
    same = (np.isnan(onnx_out) & np.isnan(ref)) | (np.isinf(ref) & (onnx_out == ref))
    d[same] = 0.0
    d[np.isnan(d)] = np.inf
    return d


def _run(model: nn.Module, tensors) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*tensors)
    return [r.float().numpy() for r in output_tensors(out)]


def _enabled_quantizers(model: nn.Module) -> list:
    """The model's enabled ModelOpt ``TensorQuantizer`` modules (none without ModelOpt state)."""
    return [m for m in model.modules() if type(m).__name__ == "TensorQuantizer" and getattr(m, "is_enabled", False)]
