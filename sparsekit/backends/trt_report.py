"""Which layers ran sparse kernels: parse TensorRT's build log and engine-inspector JSON, map
TensorRT's (fused) layers back to ONNX nodes, and join with the ONNX 2:4 check.

Evidence, in order of strength:
  * the build log's two INFO lines ``(Sparsity) Layers eligible for sparse math: ...`` and
    ``(Sparsity) TRT inference plan picked sparse implementation for layers: ...``;
  * the inspector's per-layer tactic name (``sparse`` / ``sptensor`` in it: the practical signal);
  * ``HasSparseWeights`` (older builds: ``AllowSparse``), which does NOT prove a sparse kernel ran.
Both TensorRT 10.x (``Bindings``) and 11.x (``I/O Tensors``) inspector layouts are read.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable

_ELIGIBLE = re.compile(r"\(Sparsity\) Layers eligible for sparse math:\s*(.*)$")
_PICKED = re.compile(r"\(Sparsity\) TRT inference plan picked sparse implementation for layers:\s*(.*)$")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
_SPARSE_TACTIC = re.compile(r"sparse|sptensor", re.IGNORECASE)


@dataclass
class SparsityLog:
    """The two ``(Sparsity)`` lines of a build log (TensorRT layer names)."""

    eligible: list[str] = field(default_factory=list)
    picked: list[str] = field(default_factory=list)
    seen: bool = False


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(", ") if n.strip()]


def parse_sparsity_log(lines: Iterable[str]) -> SparsityLog:
    """Collect eligible/picked layer names from build-log lines (any prefix, several lines OK)."""
    out = SparsityLog()
    for line in lines:
        if m := _ELIGIBLE.search(line):
            out.eligible += _names(m.group(1))
            out.seen = True
        elif m := _PICKED.search(line):
            out.picked += _names(m.group(1))
            out.seen = True
    return out


@dataclass
class TrtLayer:
    """One layer of the engine inspector's JSON.

    Attributes:
        name: TensorRT layer name (fused layers join names with `` + ``).
        layer_type: e.g. ``gemm``, ``CaskConvolution``, ``Reformat``.
        tactic: tactic name, or "".
        has_sparse_weights: ``HasSparseWeights`` / ``AllowSparse`` (None when absent).
        onnx_nodes: ONNX node names from ``Metadata`` (or split from the name).
    """

    name: str
    layer_type: str
    tactic: str
    has_sparse_weights: bool | None
    onnx_nodes: list[str]

    @property
    def sparse_tactic(self) -> bool:
        return bool(_SPARSE_TACTIC.search(self.tactic))


def parse_inspector_json(text: str | dict) -> tuple[list[TrtLayer], list[str]]:
    """Parse ``get_engine_information(LayerInformationFormat.JSON)`` output.

    Returns:
        ``(layers, io_tensor_names)``. Layers given only as strings (non-detailed verbosity) get an
        empty tactic and ``has_sparse_weights=None``.
    """
    data = json.loads(text) if isinstance(text, str) else text
    layers = []
    for item in data.get("Layers", []):
        if isinstance(item, str):
            layers.append(TrtLayer(item, "", "", None, [n.strip() for n in item.split(" + ")]))
            continue
        name = str(item.get("Name", ""))
        meta = str(item.get("Metadata", "") or "")
        nodes = _ONNX_LAYER.findall(meta) or [n.strip() for n in name.split(" + ") if n.strip()]
        flag = item.get("HasSparseWeights", item.get("AllowSparse"))
        layers.append(TrtLayer(name, str(item.get("LayerType", "")), str(item.get("TacticName", "") or ""), None if flag is None else bool(int(flag)), nodes))
    io = data.get("I/O Tensors", data.get("Bindings", []))
    io_names = [b if isinstance(b, str) else str(b.get("Name", "")) for b in io]
    return layers, io_names


@dataclass
class LayerSparsity:
    """Per ONNX weighted layer: what the ONNX holds and what TensorRT did with it.

    Attributes:
        onnx_node: ONNX Conv/Gemm/MatMul node name; ``name`` its module scope.
        onnx_2to4: the weight is 2:4 on TensorRT's axis in the ONNX.
        trt_layer: the TensorRT layer that contains the node ("" if not found).
        eligible: TensorRT listed the layer as eligible for sparse math (None: no log).
        sparse_kernel: a sparse implementation was picked (log line or tactic name).
        has_sparse_weights: the inspector flag (not proof of a sparse kernel).
        tactic: the tactic name.
        flop_share: the node's share of model FLOPs (batch 1).
    """

    name: str
    onnx_node: str
    onnx_2to4: bool
    trt_layer: str = ""
    eligible: bool | None = None
    sparse_kernel: bool | None = None
    has_sparse_weights: bool | None = None
    tactic: str = ""
    flop_share: float | None = None


@dataclass
class SparseKernelReport:
    """The per-layer sparse-kernel report of one build."""

    backend: str
    sparse_requested: bool
    log_seen: bool
    layers: list[LayerSparsity]
    note: str = ""

    @property
    def summary(self) -> dict:
        def share(pred) -> float:
            return round(sum(layer.flop_share or 0.0 for layer in self.layers if pred(layer)), 4)

        return {
            "layers": len(self.layers),
            "onnx_2to4": sum(layer.onnx_2to4 for layer in self.layers),
            "eligible": sum(bool(layer.eligible) for layer in self.layers),
            "sparse_kernel": sum(bool(layer.sparse_kernel) for layer in self.layers),
            "onnx_2to4_flop_share": share(lambda layer: layer.onnx_2to4),
            "sparse_kernel_flop_share": share(lambda layer: bool(layer.sparse_kernel)),
        }

    def to_dict(self) -> dict:
        return {"backend": self.backend, "sparse_requested": self.sparse_requested, "log_seen": self.log_seen, "note": self.note, "summary": self.summary, "layers": [asdict(layer) for layer in self.layers]}

    def to_markdown(self) -> str:
        s = self.summary
        lines = [
            f"# Sparse-kernel report ({self.backend}, sparse weights {'on' if self.sparse_requested else 'off'})",
            "",
            f"{s['onnx_2to4']} of {s['layers']} weighted layers are 2:4 in the ONNX ({100 * s['onnx_2to4_flop_share']:.1f}% of FLOPs); "
            f"TensorRT found {s['eligible']} eligible and ran sparse kernels in {s['sparse_kernel']} ({100 * s['sparse_kernel_flop_share']:.1f}% of FLOPs).",
        ]
        if self.note:
            lines += ["", self.note]
        lines += ["", "| layer | ONNX node | 2:4 in ONNX | TRT layer | eligible | sparse kernel | HasSparseWeights | tactic | FLOPs % |", "|---|---|---|---|---|---|---|---|---:|"]
        mark = {True: "yes", False: "no", None: "-"}
        for layer in self.layers:
            share = "-" if layer.flop_share is None else f"{100 * layer.flop_share:.1f}"
            lines.append(f"| `{layer.name}` | `{layer.onnx_node}` | {mark[layer.onnx_2to4]} | `{layer.trt_layer}` | {mark[layer.eligible]} | {mark[layer.sparse_kernel]} | {mark[layer.has_sparse_weights]} | {layer.tactic} | {share} |")
        return "\n".join(lines) + "\n"


def onnx_layer_rows(onnx_path) -> list[LayerSparsity]:
    """One row per weighted ONNX layer: its node, 2:4 verdict and FLOP share (no TensorRT facts yet)."""
    from sparsekit.analyze.onnx_layers import analyze_onnx
    from sparsekit.sparsify.check import check_onnx

    shares = {}
    for layer in analyze_onnx(onnx_path).layers:
        shares.setdefault(layer.name, layer.flop_share)
    out, seen = [], set()
    for c in check_onnx(onnx_path).layers:
        if c.name in seen:
            continue
        seen.add(c.name)
        out.append(LayerSparsity(c.name, c.node, c.is_2to4, flop_share=shares.get(c.name)))
    return out


def build_trt_report(onnx_path, log_lines: Iterable[str], inspector_json: str | dict | None, sparse_requested: bool) -> SparseKernelReport:
    """Join the ONNX 2:4 check with TensorRT's log and inspector output, per ONNX layer."""
    log = parse_sparsity_log(log_lines)
    trt_layers, _ = parse_inspector_json(inspector_json) if inspector_json else ([], [])
    by_node: dict[str, TrtLayer] = {}
    for t in trt_layers:
        for node in t.onnx_nodes:
            by_node.setdefault(node, t)
    eligible, picked = set(log.eligible), set(log.picked)
    layers = onnx_layer_rows(onnx_path)
    for layer in layers:
        t = by_node.get(layer.onnx_node)
        if t is not None:
            layer.trt_layer, layer.tactic, layer.has_sparse_weights = t.name, t.tactic, t.has_sparse_weights
        names = {layer.onnx_node, layer.trt_layer} - {""}
        if log.seen:
            layer.eligible = bool(names & eligible) or any(layer.onnx_node in n.split(" + ") for n in eligible)
            layer.sparse_kernel = bool(names & picked) or any(layer.onnx_node in n.split(" + ") for n in picked) or bool(t and t.sparse_tactic)
        elif t is not None:
            layer.sparse_kernel = t.sparse_tactic
    note = "" if log.seen or not sparse_requested else "The build log had no (Sparsity) lines: was the log captured at INFO severity?"
    return SparseKernelReport("tensorrt", sparse_requested, log.seen, layers, note)
