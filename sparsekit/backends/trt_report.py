"""Which layers ran sparse kernels: parse TensorRT's build log and engine-inspector JSON, map
TensorRT's (fused) layers back to ONNX nodes, and join with the ONNX 2:4 check.

Evidence, in order of strength:
  * the build log's two ``(Sparsity)`` lines, in the wording of TensorRT 8.x
    (``Layers eligible for sparse math: ...`` / ``TRT inference plan picked sparse implementation
    for layers: ...``) or of TensorRT 10.x/11.x and TensorRT-RTX (``Found N layer(s) eligible to use
    sparse tactics: ...`` / ``Chose M layer(s) using sparse tactics: ...``, the list may be absent);
  * the inspector's per-layer tactic name (``sparse`` / ``sptensor`` in it: the practical signal);
  * ``HasSparseWeights`` (older builds: ``AllowSparse``), which does NOT prove a sparse kernel ran.
Both TensorRT 10.x (``Bindings``) and 11.x (``I/O Tensors``) inspector layouts are read. Without an
inspector (no GPU), the layer list TensorRT prints into its VERBOSE log maps ONNX nodes to layers.
TensorRT-RTX picks kernels when an engine is first compiled on the target GPU: its ahead-of-time
build cannot know them, and the report says so instead of guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable

from sparsekit.backends.trt_flavours import TENSORRT, TrtFlavour

_ELIGIBLE_8 = re.compile(r"\(Sparsity\) Layers eligible for sparse math:(.*)", re.S)
_PICKED_8 = re.compile(r"\(Sparsity\) TRT inference plan picked sparse implementation for layers:(.*)", re.S)
_ELIGIBLE_10 = re.compile(r"\(Sparsity\) Found (\d+) layer\(s\) eligible to use sparse tactics:?(.*)", re.S)
_PICKED_10 = re.compile(r"\(Sparsity\) Chose (\d+) layer\(s\) using sparse tactics:?(.*)", re.S)
_LAYER_LINE = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>[^,]*),.*?TacticName: (?P<tactic>[^,]*),.*?Metadata: (?P<meta>.*)$")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
_SPARSE_TACTIC = re.compile(r"sparse|sptensor", re.IGNORECASE)


@dataclass
class SparsityLog:
    """The ``(Sparsity)`` lines of a build log (TensorRT layer names).

    Attributes:
        eligible / picked: layer names listed as eligible / given sparse kernels.
        eligible_count / picked_count: the counts TensorRT wrote (10.x+), or the list lengths (8.x);
            None when that line is absent.
        wording: ``"8.x"`` or ``"10.x+"`` (10.x, 11.x and TensorRT-RTX); None when no line was seen.
    """

    eligible: list[str] = field(default_factory=list)
    picked: list[str] = field(default_factory=list)
    eligible_count: int | None = None
    picked_count: int | None = None
    wording: str | None = None

    @property
    def seen(self) -> bool:
        return self.wording is not None


def _names(text: str) -> list[str]:
    return [n.strip() for n in re.split(r",|\n", text) if n.strip()]


def log_messages(lines: Iterable[str]) -> list[str]:
    """Group log lines into messages: a line starting with ``[`` (a severity or time stamp) or holding
    ``(Sparsity)`` starts a message; any other line continues the previous one."""
    messages: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if messages and not line.startswith("[") and "(Sparsity)" not in line:
            messages[-1] += "\n" + line
        else:
            messages.append(line)
    return messages


def _add(count: int | None, n: int) -> int:
    return (count or 0) + n


def parse_sparsity_log(lines: Iterable[str]) -> SparsityLog:
    """Collect eligible/picked layers from build-log lines in either wording (any prefix; several
    lines add up; a list may continue on the following unprefixed lines)."""
    out = SparsityLog()
    for message in log_messages(lines):
        if m := _ELIGIBLE_10.search(message):
            out.eligible_count, out.wording = _add(out.eligible_count, int(m.group(1))), "10.x+"
            out.eligible += _names(m.group(2))
        elif m := _PICKED_10.search(message):
            out.picked_count, out.wording = _add(out.picked_count, int(m.group(1))), "10.x+"
            out.picked += _names(m.group(2))
        elif m := _ELIGIBLE_8.search(message):
            names = _names(m.group(1))
            out.eligible_count, out.wording = _add(out.eligible_count, len(names)), out.wording or "8.x"
            out.eligible += names
        elif m := _PICKED_8.search(message):
            names = _names(m.group(1))
            out.picked_count, out.wording = _add(out.picked_count, len(names)), out.wording or "8.x"
            out.picked += names
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


def parse_layer_log(lines: Iterable[str]) -> list[TrtLayer]:
    """The engine's layers as TensorRT prints them into its VERBOSE build log (one ``Name: ...,
    LayerType: ..., TacticName: ..., Metadata: [ONNX Layer: ...]`` line each). No sparse-weights
    flag is printed there, so ``has_sparse_weights`` is None."""
    layers = []
    for line in lines:
        if m := _LAYER_LINE.match(line.strip()):
            name = m.group("name")
            nodes = _ONNX_LAYER.findall(m.group("meta")) or [n.strip() for n in name.split(" + ") if n.strip()]
            layers.append(TrtLayer(name, m.group("type").strip(), m.group("tactic").strip(), None, nodes))
    return layers


@dataclass
class LayerSparsity:
    """Per ONNX weighted layer: what the ONNX holds and what TensorRT did with it.

    Attributes:
        onnx_node: ONNX Conv/Gemm/MatMul node name; ``name`` its module scope.
        onnx_2to4: the weight is 2:4 on TensorRT's axis in the ONNX.
        trt_layer: the TensorRT layer that contains the node ("" if not found).
        eligible: TensorRT listed the layer as eligible for sparse tactics (None: unknown).
        sparse_kernel: a sparse implementation was picked (log line or tactic name; None: unknown).
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
    """The per-layer sparse-kernel report of one build.

    Attributes:
        backend: the backend that built it.
        sparse_requested: the sparse-weights flag was set.
        log_seen: the log had ``(Sparsity)`` lines.
        layers: one row per weighted ONNX layer.
        note: what the reader must know to read the table (e.g. why columns are unknown).
        known: this build can know which layers run sparse kernels (False for ahead-of-time
            TensorRT-RTX builds, whose kernels are chosen on the target GPU).
        sparsity_log: the counts TensorRT wrote and the wording seen (see :class:`SparsityLog`).
    """

    backend: str
    sparse_requested: bool
    log_seen: bool
    layers: list[LayerSparsity]
    note: str = ""
    known: bool = True
    sparsity_log: dict = field(default_factory=dict)

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
            "eligible_reported": self.sparsity_log.get("eligible_count"),
            "chosen_reported": self.sparsity_log.get("picked_count"),
        }

    def to_dict(self) -> dict:
        return {
            "backend": self.backend, "sparse_requested": self.sparse_requested, "log_seen": self.log_seen, "known": self.known, "note": self.note,
            "sparsity_log": self.sparsity_log, "summary": self.summary, "layers": [asdict(layer) for layer in self.layers],
        }

    def headline(self) -> str:
        """One sentence: how much of the model is 2:4 and what is known about sparse kernels."""
        s = self.summary
        text = f"{s['onnx_2to4']} of {s['layers']} weighted layers are 2:4 in the ONNX ({100 * s['onnx_2to4_flop_share']:.1f}% of FLOPs); "
        if not self.known:
            return text + "which of them run sparse kernels is decided on the target GPU, not by this build."
        eligible = s["eligible"] if s["eligible_reported"] is None else max(s["eligible"], s["eligible_reported"])
        return text + f"TensorRT found {eligible} eligible and ran sparse kernels in {s['sparse_kernel']} ({100 * s['sparse_kernel_flop_share']:.1f}% of FLOPs)."

    def to_markdown(self) -> str:
        lines = [f"# Sparse-kernel report ({self.backend}, sparse weights {'on' if self.sparse_requested else 'off'})", "", self.headline()]
        if self.note:
            lines += ["", self.note]
        lines += ["", "| layer | ONNX node | 2:4 in ONNX | TRT layer | eligible | sparse kernel | HasSparseWeights | tactic | FLOPs % |", "|---|---|---|---|---|---|---|---|---:|"]
        mark = {True: "yes", False: "no", None: "-"}
        for layer in self.layers:
            share = "-" if layer.flop_share is None else f"{100 * layer.flop_share:.1f}"
            lines.append(f"| `{layer.name}` | `{layer.onnx_node}` | {mark[layer.onnx_2to4]} | `{layer.trt_layer}` | {mark[layer.eligible]} | {mark[layer.sparse_kernel]} | {mark[layer.has_sparse_weights]} | {layer.tactic} | {share} |")
        return "\n".join(lines) + "\n"


def onnx_layer_rows(onnx_path, model=None) -> list[LayerSparsity]:
    """One row per weighted ONNX layer: its node, 2:4 verdict and FLOP share (no TensorRT facts yet).

    ``model`` is the file already loaded without its external data (None loads it)."""
    from sparsekit.analyze.onnx_layers import analyze_onnx
    from sparsekit.sparsify.check import check_onnx

    shares = {}
    for layer in analyze_onnx(onnx_path, model).layers:
        shares.setdefault(layer.name, layer.flop_share)
    out, seen = [], set()
    for c in check_onnx(onnx_path, model=model).layers:
        if c.name in seen:
            continue
        seen.add(c.name)
        out.append(LayerSparsity(c.name, c.node, c.is_2to4, flop_share=shares.get(c.name)))
    return out


def _listed(layer: LayerSparsity, names: set[str]) -> bool:
    """The layer's node or TensorRT layer is among ``names`` (fused names count by their parts)."""
    return bool(({layer.onnx_node, layer.trt_layer} - {""}) & names) or any(layer.onnx_node in n.split(" + ") for n in names)


def _note(flavour: TrtFlavour, known: bool, log: SparsityLog, inspected: bool, sparse_requested: bool) -> str:
    if not known:
        return (f"{flavour.title} picks kernels, sparse ones included, when the engine is first compiled on the target GPU, not in this "
                "ahead-of-time build: which layers run sparse cannot be known here, so 'eligible' and 'sparse kernel' are unknown (-), not 'no'. "
                "Load the engine on a supported GPU for that evidence.")
    if log.seen or not sparse_requested:
        return ""
    if inspected:
        return f"{flavour.title} wrote no (Sparsity) line in its VERBOSE build log; the sparse-kernel column comes from the engine inspector's tactic names only."
    return f"{flavour.title} wrote no (Sparsity) line in its VERBOSE build log and no engine inspector ran: there is no evidence either way."


def build_trt_report(onnx_path, log_lines: Iterable[str], inspector_json: str | dict | None, sparse_requested: bool, flavour: TrtFlavour = TENSORRT, on_target_gpu: bool = False, model=None) -> SparseKernelReport:
    """Join the ONNX 2:4 check with TensorRT's log and inspector output, per ONNX layer.

    Args:
        onnx_path: the ONNX the engine was built from.
        log_lines: the build log (and, on a GPU, the log of loading the engine).
        inspector_json: the engine inspector's JSON, or None (then the log's layer list maps nodes).
        sparse_requested: the sparse-weights flag was set.
        flavour: TensorRT or TensorRT-RTX.
        on_target_gpu: the evidence comes from loading the engine on the GPU it runs on (what makes
            TensorRT-RTX's kernel choices known).
        model: the ONNX already loaded without its external data (None loads it).
    """
    log_lines = list(log_lines)
    log = parse_sparsity_log(log_lines)
    trt_layers = parse_inspector_json(inspector_json)[0] if inspector_json else parse_layer_log(log_lines)
    known = flavour.kernels_chosen_at_build or on_target_gpu
    by_node: dict[str, TrtLayer] = {}
    for t in trt_layers:
        for node in t.onnx_nodes:  # a node fused into several layers maps to the one named after it
            if node not in by_node or (node in t.name and node not in by_node[node].name):
                by_node[node] = t
    eligible, picked = set(log.eligible), set(log.picked)
    layers = onnx_layer_rows(onnx_path, model)
    for layer in layers:
        t = by_node.get(layer.onnx_node)
        if t is not None:
            layer.trt_layer, layer.tactic, layer.has_sparse_weights = t.name, t.tactic, t.has_sparse_weights
        if not known:
            continue
        tactic_says = bool(t and t.sparse_tactic) if inspector_json else None
        if eligible or log.eligible_count == 0:
            layer.eligible = _listed(layer, eligible)
        if picked or log.picked_count == 0:
            layer.sparse_kernel = _listed(layer, picked) or bool(tactic_says)
        elif t is not None and tactic_says is not None:
            layer.sparse_kernel = tactic_says
    sparsity = {"wording": log.wording, "eligible_count": log.eligible_count, "picked_count": log.picked_count}
    return SparseKernelReport(flavour.backend, sparse_requested, log.seen, layers, _note(flavour, known, log, bool(inspector_json), sparse_requested), known, sparsity)
