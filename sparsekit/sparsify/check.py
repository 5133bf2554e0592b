"""Verify 2:4 on TensorRT's axis, layer by layer, for a PyTorch model or an ONNX file."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from torch import nn

from sparsekit.analyze.rules import trt_eligible
from sparsekit.sparsify.pattern import group_stats
from sparsekit.sparsify.select import layer_kind

SPARSIFIED = "@sparsified"
"""Requirement token: every layer the kit sparsified (masked) must be 2:4."""
ELIGIBLE = "@eligible"
"""Requirement token: every layer TensorRT could run sparse must be 2:4."""

_TORCH_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerCheck:
    """2:4 verdict for one weight.

    Attributes:
        name: layer name (PyTorch module path, or the ONNX node's module scope / node name).
        kind: ``Linear``/``Conv2d``... or ONNX ``Conv``/``Gemm``/``MatMul``.
        weight: parameter or initializer name.
        shape: stored weight shape.
        axis: axis grouped by 4.
        dtype: stored dtype.
        eligible: TensorRT could run it with 2:4 kernels (shape/type rules).
        reason: why (not) eligible.
        groups / conforming: 4-groups in total / with >= 2 zeros.
        zero_fraction: share of exact zeros in the weight.
        is_2to4: every group conforms.
        sparsified: the kit (ModelOpt) put a 2:4 mask on it (PyTorch only; None for ONNX).
        required: a requirement names this layer.
        node: the consuming ONNX node's name (ONNX checks only).
    """

    name: str
    kind: str
    weight: str
    shape: list[int]
    axis: int
    dtype: str
    eligible: bool
    reason: str
    groups: int
    conforming: int
    zero_fraction: float
    is_2to4: bool
    sparsified: bool | None = None
    required: bool = False
    node: str = ""


@dataclass
class CheckReport:
    """Per-layer 2:4 verdicts and whether the requirements hold."""

    source: str
    layers: list[LayerCheck] = field(default_factory=list)
    require: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[LayerCheck]:
        return [layer for layer in self.layers if layer.required and not layer.is_2to4]

    @property
    def passed(self) -> bool:
        return not self.failures

    def sparse_names(self) -> set[str]:
        return {layer.name for layer in self.layers if layer.is_2to4}

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "require": self.require,
            "passed": self.passed,
            "summary": {
                "layers": len(self.layers),
                "eligible": sum(layer.eligible for layer in self.layers),
                "sparse_2to4": sum(layer.is_2to4 for layer in self.layers),
                "required": sum(layer.required for layer in self.layers),
                "failures": [layer.name for layer in self.failures],
            },
            "layers": [asdict(layer) for layer in self.layers],
        }


def _mark_required(layers: list[LayerCheck], require: Sequence[str], sparsified_names: Iterable[str] = ()) -> None:
    sparsified_names = set(sparsified_names)
    for layer in layers:
        for pattern in require:
            if pattern == SPARSIFIED:
                hit = bool(layer.sparsified) or layer.name in sparsified_names
            elif pattern == ELIGIBLE:
                hit = layer.eligible
            else:
                hit = fnmatch.fnmatchcase(layer.name, pattern) or fnmatch.fnmatchcase(layer.weight, pattern)
            layer.required = layer.required or hit


def _is_masked(module: nn.Module) -> bool:
    mask = getattr(module, "_weight_mask", None)
    return mask is not None and not bool(mask.all())


def check_model(model: nn.Module, require: Sequence[str] = (SPARSIFIED,), source: str = "model") -> CheckReport:
    """Check every Linear/Conv weight of a PyTorch model (masked weights as the model computes them).

    Args:
        model: a plain or ModelOpt-sparsified module.
        require: fnmatch patterns on layer names, or :data:`SPARSIFIED` / :data:`ELIGIBLE`.
        source: label for the report.
    """
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, _TORCH_KINDS):
            continue
        weight = module.weight.detach().float().cpu().numpy()
        axis = 1
        kind = layer_kind(module)
        verdict = trt_eligible(kind, weight.shape, axis, getattr(module, "groups", 1))
        stats = group_stats(weight, axis)
        layers.append(LayerCheck(name, kind, f"{name}.weight", list(weight.shape), axis, "float32", verdict.ok, verdict.reason, stats.groups, stats.conforming, round(stats.zero_fraction, 6), stats.is_2to4, _is_masked(module)))
    _mark_required(layers, require)
    return CheckReport(source, layers, list(require))


def check_onnx(path: str | os.PathLike, require: Sequence[str] = (), sparsified_modules: Iterable[str] = ()) -> CheckReport:
    """Check every constant Conv/Gemm/MatMul weight of an ONNX file on TensorRT's axis.

    Weights are followed back through Q/DQ, Cast and Transpose nodes.

    Args:
        path: the ONNX file.
        require: fnmatch patterns on layer names / initializer names, or :data:`SPARSIFIED`
            (with ``sparsified_modules``) or :data:`ELIGIBLE`.
        sparsified_modules: PyTorch module names that were sparsified before export.

    Raises:
        OnnxModelError: the file is missing or unreadable.
    """
    from onnx import numpy_helper

    from sparsekit.analyze.onnx_weights import find_weights, load_onnx

    model = load_onnx(path)
    arrays = {t.name: t for t in model.graph.initializer}
    layers = []
    for ref in find_weights(model):
        weight = numpy_helper.to_array(arrays[ref.initializer])
        verdict = trt_eligible(ref.op_type, ref.dims, ref.axis, dtype=ref.dtype)
        stats = group_stats(weight, ref.axis)
        name = ref.module or ref.node
        layers.append(LayerCheck(name, ref.op_type, ref.initializer, list(ref.dims), ref.axis, ref.dtype, verdict.ok, verdict.reason, stats.groups, stats.conforming, round(stats.zero_fraction, 6), stats.is_2to4 and verdict.ok, node=ref.node))
    _mark_required(layers, require, sparsified_modules)
    return CheckReport(str(path), layers, list(require))
