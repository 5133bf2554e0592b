"""Per-layer 2:4 analysis of a PyTorch model: eligibility, ModelOpt rules, win heuristic, FLOP share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


from sparsekit.analyze.flop_count import flop_share
from sparsekit.analyze.flops import layer_flops
from sparsekit.analyze.rules import amdahl_bound, likely_wins, modelopt_magnitude, modelopt_sparsegpt, trt_eligible
from sparsekit.analyze.layer_kinds import known_layers, layer_kind
from sparsekit.analyze.ties import tied_weights


@dataclass
class LayerAnalysis:
    """One Linear/Conv (PyTorch) or Conv/Gemm/MatMul (ONNX) layer.

    Attributes:
        name: module path or ONNX node scope.
        kind: layer type.
        shape: weight shape as stored.
        axis: the axis TensorRT groups by 4; ``axis_len`` its length.
        trt: can hold 2:4 for TensorRT (verdict + reason).
        magnitude / sparsegpt: will ModelOpt's mode sparsify it (verdict + reason).
        likely_win: heuristic verdict on whether sparse kernels beat dense here.
        gemm_rows: the GEMM's M dimension at the analysed batch (small M rarely gains).
        flops: FLOPs at the analysed input shape, every call counted; ``flop_share`` of the model
            total (0..1), both as :mod:`sparsekit.analyze.flop_count` defines them.
        tied_to: the parameter this layer's weight is shared with (kept dense unless untied), if any.
        subgraph: the If/Loop/Scan subgraph holding the layer (ONNX), "" at top level.
        dtype: the weight's stored type (ONNX), "" for PyTorch layers.
    """

    name: str
    kind: str
    shape: list[int]
    axis: int
    axis_len: int
    trt: dict
    magnitude: dict
    sparsegpt: dict
    likely_win: dict
    gemm_rows: int | None
    flops: int | None
    flop_share: float | None
    tied_to: str | None = None
    subgraph: str = ""
    dtype: str = ""


@dataclass
class AnalysisReport:
    """All layers plus the end-to-end bound."""

    source: str
    inputs: list[dict]
    total_flops: int | None
    layers: list[LayerAnalysis] = field(default_factory=list)

    def share(self, predicate) -> float:
        return sum(layer.flop_share or 0.0 for layer in self.layers if predicate(layer))

    @property
    def summary(self) -> dict:
        eligible = self.share(lambda layer: layer.trt["ok"] and layer.magnitude["ok"])
        winning = self.share(lambda layer: layer.trt["ok"] and layer.magnitude["ok"] and layer.likely_win["ok"])
        return {
            "layers": len(self.layers),
            "trt_eligible": sum(layer.trt["ok"] for layer in self.layers),
            "sparsifiable": sum(layer.trt["ok"] and layer.magnitude["ok"] for layer in self.layers),
            "likely_win": sum(layer.trt["ok"] and layer.magnitude["ok"] and layer.likely_win["ok"] for layer in self.layers),
            "sparsifiable_flop_share": round(eligible, 4),
            "likely_win_flop_share": round(winning, 4),
            "amdahl_bound": round(amdahl_bound(eligible), 4),
            "amdahl_bound_likely_win": round(amdahl_bound(winning), 4),
        }

    def to_dict(self) -> dict:
        return {"source": self.source, "inputs": self.inputs, "total_flops": self.total_flops, "summary": self.summary, "layers": [asdict(layer) for layer in self.layers]}


def analyze_model(loaded) -> AnalysisReport:
    """Analyse every Linear/Conv of a :class:`~sparsekit.models.source.LoadedModel` at its input shape.

    The Amdahl bound assumes the sparsifiable layers (TensorRT-eligible and accepted by ModelOpt's
    magnitude rule) run 2x faster and everything else is unchanged. A layer whose weight is tied to
    another parameter (a language model's head and its token embedding) counts as dense, as
    ``sparsify`` keeps it unless told to untie it.
    """
    model = loaded.model
    flops, rows, total = layer_flops(model, loaded.inputs.random(seed=0))
    modules = known_layers(model)
    ties = tied_weights(model, modules)
    layers = []
    for name, module in modules.items():
        shape = tuple(module.weight.shape)
        kind = layer_kind(module)
        f = flops.get(name)
        groups = getattr(module, "groups", 1)
        magnitude, sparsegpt = modelopt_magnitude(kind, shape, groups).to_dict(), modelopt_sparsegpt(kind, shape, groups).to_dict()
        tie = ties.get(name)
        if tie is not None:
            dense = {"ok": False, "reason": f"weight tied to '{tie.tied_to}': kept dense unless sparsify --untie-tied (+{tie.extra_bytes / 1e6:.2f} MB)"}
            magnitude, sparsegpt = (dense if m["ok"] else m for m in (magnitude, sparsegpt))
        layers.append(
            LayerAnalysis(
                name, kind, list(shape), 1, shape[1],
                trt_eligible(kind, shape, 1, groups).to_dict(),
                magnitude, sparsegpt,
                likely_wins(shape, 1, rows.get(name)).to_dict(),
                rows.get(name), f, flop_share(f, total),
                tie.tied_to if tie else None,
            )
        )
    return AnalysisReport(loaded.name, loaded.inputs.to_dict(), total, layers)
