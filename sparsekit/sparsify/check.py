"""Verify 2:4 on TensorRT's axis, layer by layer, for a PyTorch model or an ONNX file."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from sparsekit._lazy import lazy_import

from sparsekit.analyze.rules import Verdict, trt_eligible
from sparsekit.errors import CheckRequirementError, OnnxModelError
from sparsekit.sparsify.methods import METHODS
from sparsekit.sparsify.pattern import GroupStats, group_stats, zero_group_stats
from sparsekit.analyze.layer_kinds import layer_kind
from sparsekit.analyze.onnx_weights import find_weights, stored_zero_mask
from sparsekit.onnx_io.tensors import constant_tensors, tensor_array
from sparsekit.onnx_io.validate import load_validated_onnx

SPARSIFIED = "@sparsified"
"""Requirement token: every layer the kit sparsified must be 2:4 (a model: the layers holding a
2:4 mask; an ONNX: the layers its export recorded in the ``sparsekit.sparse_layers`` metadata)."""
ELIGIBLE = "@eligible"
"""Requirement token: every layer that TensorRT could run sparse AND that ``sparsify`` would
sparsify (with one of its methods) must be 2:4."""
SPARSE_LAYERS_KEY = "sparsekit.sparse_layers"
"""ONNX metadata key under which ``export`` records the module names that were 2:4 (a JSON list)."""

nn = lazy_import("torch.nn")  # checking an ONNX file needs no torch: a small file is checked in well under 2 s


def _torch_kinds() -> tuple:
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


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
        eligible: TensorRT could run it with 2:4 kernels (shape/type rules), reported apart from
            the pattern: a conforming weight TensorRT cannot run sparse is ``is_2to4`` and not ``eligible``.
        reason: why (not) eligible.
        groups / conforming: 4-groups in total / with >= 2 zeros.
        zero_fraction: share of exact zeros in the weight.
        is_2to4: every group conforms, judged on the STORED values (fp8 +0/-0 bit patterns, a
            quantized weight's zero point, packed int4 unpacked).
        sparsified: the kit (ModelOpt) put a 2:4 mask on it (PyTorch only; None for ONNX).
        required: a requirement names this layer.
        node: the consuming ONNX node's name (ONNX checks only).
        sparsifiable: a method of ``sparsify`` would sparsify this layer (ModelOpt's shape rules).
        sparsify_reason: which methods would, or why none would.
        trt_sparse: 2:4 and eligible: TensorRT can run it with sparse kernels.
        zero: what counted as zero in the stored values (``0.0``, ``+0 or -0 bit pattern``,
            ``zero point 128``...), or why the values could not be judged.
        subgraph: the If/Loop/Scan subgraph holding the layer (ONNX), "" at top level.
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
    sparsifiable: bool = False
    sparsify_reason: str = ""
    trt_sparse: bool = False
    zero: str = ""
    subgraph: str = ""


@dataclass
class CheckReport:
    """Per-layer 2:4 verdicts and whether the requirements hold.

    Attributes:
        source: what was checked (path or label).
        layers: one verdict per weight.
        require: the requirements (patterns and tokens) applied.
        missing: layers required by name (recorded as sparsified) that the file does not have.
    """

    source: str
    layers: list[LayerCheck] = field(default_factory=list)
    require: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[LayerCheck]:
        return [layer for layer in self.layers if layer.required and not layer.is_2to4]

    @property
    def required(self) -> list[LayerCheck]:
        return [layer for layer in self.layers if layer.required]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.missing

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
                "trt_sparse": sum(layer.trt_sparse for layer in self.layers),
                "required_not_eligible": [layer.name for layer in self.required if layer.is_2to4 and not layer.eligible],
                "required": sum(layer.required for layer in self.layers),
                "failures": [layer.name for layer in self.failures],
                "missing": list(self.missing),
            },
            "layers": [asdict(layer) for layer in self.layers],
        }


def sparsify_verdict(kind: str, shape: Sequence[int], groups: int = 1) -> Verdict:
    """Would ``sparsify`` sparsify a layer of this kind and weight shape with one of its methods?

    The rules are those of :data:`sparsekit.sparsify.methods.METHODS` (ModelOpt's shape rules).

    Args:
        kind: PyTorch layer kind (``Linear``, ``Conv2d``...).
        shape: the weight shape in PyTorch's layout (``[out, in, ...]``).
        groups: conv groups (grouped convs stay dense: :func:`sparsekit.analyze.rules.grouped_conv`).
    """
    verdicts = {name: method.will_sparsify(kind, tuple(shape), groups) for name, method in METHODS.items()}
    accepted = [name for name, v in verdicts.items() if v.ok]
    if accepted:
        return Verdict(True, f"sparsify --method {' or '.join(accepted)}")
    reasons = list(dict.fromkeys(v.reason for v in verdicts.values()))
    return Verdict(False, "; ".join(reasons) if len(reasons) == 1 else "; ".join(f"{n}: {v.reason}" for n, v in verdicts.items()))


def _onnx_layer_as_torch(op_type: str, operand: str, dims: Sequence[int], axis: int) -> tuple[str, list[int]] | None:
    """The PyTorch layer kind and weight shape an ONNX weight was exported from, or None.

    Conv ``[K, C, ...]`` comes from ConvNd; Gemm/MatMul's 2-D second operand from ``nn.Linear``
    (``[out, in]`` with ``in`` the axis TensorRT groups). A constant first operand or a batched
    MatMul constant is no layer weight ``sparsify`` touches.
    """
    if op_type == "Conv":
        return f"Conv{len(dims) - 2}d", list(dims)
    if operand == "B" and len(dims) == 2:
        return "Linear", [dims[1 - axis], dims[axis]]
    return None


def _unmatched_error(source: str, patterns: Sequence[str], layers: Sequence[LayerCheck]) -> CheckRequirementError:
    names = list(dict.fromkeys(layer.name for layer in layers))
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    which = ", ".join(f"'{p}'" for p in patterns)
    return CheckRequirementError(
        f"--require {which} matches no layer of {source}; its layers are: {shown or 'none'}",
        "give fnmatch patterns over these names (or the initializer names), e.g. --require '" + (names[0].split(".")[0] + ".*" if names else "*") + "'",
    )


def _mark_required(layers: list[LayerCheck], require: Sequence[str], sparsified_names: Iterable[str] = (), source: str = "the model") -> None:
    """Set ``required`` on every layer a requirement names.

    Raises:
        CheckRequirementError: a pattern (not a token) matches no layer and no weight.
    """
    sparsified_names = set(sparsified_names)
    matched: set[str] = set()
    for layer in layers:
        for pattern in require:
            if pattern == SPARSIFIED:
                hit = bool(layer.sparsified) or layer.name in sparsified_names
            elif pattern == ELIGIBLE:
                hit = layer.eligible and layer.sparsifiable
            else:
                hit = fnmatch.fnmatchcase(layer.name, pattern) or fnmatch.fnmatchcase(layer.weight, pattern)
                if hit:
                    matched.add(pattern)
            layer.required = layer.required or hit
    unmatched = [p for p in require if p not in (SPARSIFIED, ELIGIBLE) and p not in matched]
    if unmatched:
        raise _unmatched_error(source, unmatched, layers)


def _is_masked(module: nn.Module) -> bool:
    mask = getattr(module, "_weight_mask", None)
    return mask is not None and not bool(mask.all())


def check_model(model: nn.Module, require: Sequence[str] = (SPARSIFIED,), source: str = "model") -> CheckReport:
    """Check every Linear/Conv weight of a PyTorch model (masked weights as the model computes them).

    Args:
        model: a plain or ModelOpt-sparsified module.
        require: fnmatch patterns on layer names, or :data:`SPARSIFIED` / :data:`ELIGIBLE`.
        source: label for the report.

    Raises:
        CheckRequirementError: a pattern in ``require`` matches no layer.
    """
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, _torch_kinds()):
            continue
        weight = module.weight.detach().float().cpu().numpy()
        axis = 1
        kind = layer_kind(module)
        verdict = trt_eligible(kind, weight.shape, axis, getattr(module, "groups", 1))
        stats = group_stats(weight, axis)
        sparsify = sparsify_verdict(kind, weight.shape, getattr(module, "groups", 1))
        layers.append(LayerCheck(
            name, kind, f"{name}.weight", list(weight.shape), axis, "float32", verdict.ok, verdict.reason, stats.groups, stats.conforming, round(stats.zero_fraction, 6), stats.is_2to4,
            _is_masked(module), sparsifiable=sparsify.ok, sparsify_reason=sparsify.reason, trt_sparse=stats.is_2to4 and verdict.ok, zero="0.0",
        ))
    _mark_required(layers, require, source=source)
    return CheckReport(source, layers, list(require))


def recorded_sparse_layers(model) -> list[str] | None:
    """The module names an ONNX's export recorded as 2:4 (:data:`SPARSE_LAYERS_KEY`), or None.

    Raises:
        OnnxModelError: the metadata entry is not a JSON list of names.
    """
    value = next((p.value for p in model.metadata_props if p.key == SPARSE_LAYERS_KEY), None)
    if value is None:
        return None
    try:
        names = json.loads(value)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise OnnxModelError(f"the ONNX metadata '{SPARSE_LAYERS_KEY}' is not a JSON list of layer names", "re-export the model with 'sparsekit export'")
    return names


def check_onnx(path: str | os.PathLike, require: Sequence[str] = (SPARSIFIED,), sparsified_modules: Iterable[str] | None = None, model=None) -> CheckReport:
    """Check every constant Conv/Gemm/MatMul weight of an ONNX file on TensorRT's axis.

    The file is validated first (every tensor stores the bytes it declares, ONNX's checker
    passes). Weights are followed back through Q/DQ, Cast and Transpose nodes, in the main graph
    and in If/Loop/Scan subgraphs. 2:4 is judged on the stored values of every type (see
    :func:`~sparsekit.analyze.onnx_weights.stored_zero_mask`); TensorRT eligibility is reported
    beside it. Time is linear in the graph size; memory one weight at a time.

    Args:
        path: the ONNX file.
        require: fnmatch patterns on layer names / initializer names, or :data:`SPARSIFIED`
            (the ``sparsified_modules``) or :data:`ELIGIBLE`.
        sparsified_modules: PyTorch module names that were sparsified before export; None reads
            the names ``export`` recorded in the file's metadata (none when it has no record).
            Names the graph does not have are listed in ``report.missing`` (a failure).
        model: the file already loaded without its external data (not loaded again); None loads it.

    Raises:
        OnnxModelError: the file is missing, unreadable, not ONNX, declares sizes it does not
            store, or fails ONNX's checker.
        ExternalDataError: its external data is outside its folder, missing or too short.
        CheckRequirementError: a pattern in ``require`` matches no layer.
    """
    # weights are read one at a time (from the file, or from its external data next to it)
    model = load_validated_onnx(path, model)
    if sparsified_modules is None:
        sparsified_modules = recorded_sparse_layers(model) or []
    sparsified_modules = list(sparsified_modules)
    tensors = constant_tensors(model)
    base_dir = os.path.dirname(os.path.abspath(path))
    layers = []
    for ref in find_weights(model):
        verdict = trt_eligible(ref.op_type, ref.dims, ref.axis, groups=ref.group, dtype=ref.dtype)
        stats, zero = _stored_stats(ref, tensors, base_dir)
        name = ref.layer_name
        torch_layer = _onnx_layer_as_torch(ref.op_type, ref.operand, ref.dims, ref.axis)
        sparsify = sparsify_verdict(*torch_layer, groups=ref.group) if torch_layer else Verdict(False, f"constant {ref.operand} operand of {ref.op_type}: not a Linear/Conv weight")
        layers.append(LayerCheck(
            name, ref.op_type, ref.initializer, list(ref.dims), ref.axis, ref.dtype, verdict.ok, verdict.reason, stats.groups, stats.conforming, round(stats.zero_fraction, 6),
            stats.is_2to4, node=ref.node, sparsifiable=sparsify.ok, sparsify_reason=sparsify.reason, trt_sparse=stats.is_2to4 and verdict.ok, zero=zero, subgraph=ref.subgraph,
        ))
    del model, tensors
    _mark_required(layers, require, sparsified_modules, source=f"'{path}'")
    found = {layer.name for layer in layers}
    missing = [name for name in sparsified_modules if name not in found] if SPARSIFIED in require else []
    return CheckReport(str(path), layers, list(require), missing)


def _stored_stats(ref, tensors: dict, base_dir: str) -> tuple[GroupStats, str]:
    """2:4 group statistics of one weight on its stored values, and what counted as zero.

    A quantized integer weight's zero is the zero point of the ``DequantizeLinear`` reading it;
    a zero point that is computed at run time, or of an unknown layout, leaves the weight
    unjudged (0 groups, so not 2:4) with the reason.
    """
    zero_point = None
    if ref.zero_point:
        zp_tensor = tensors.get(ref.zero_point)
        if zp_tensor is None:
            return GroupStats(0, 0, 0.0), f"zero point '{ref.zero_point}' is computed at run time, not stored: values not judged"
        zero_point = tensor_array(zp_tensor, base_dir)
    mask, zero = stored_zero_mask(tensors[ref.initializer], base_dir, zero_point, ref.zero_point_axis, ref.block_size)
    if mask is None:
        return GroupStats(0, 0, 0.0), f"values not judged: {zero}"
    return zero_group_stats(mask, ref.axis), zero
