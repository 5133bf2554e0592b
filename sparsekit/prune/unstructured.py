"""Unstructured (element-wise) magnitude pruning: the classic first method, kept as a comparison.

Weights below a magnitude threshold (or the smallest ``amount`` share, per layer or across
layers) become exact zeros. The model keeps its dense shapes and a GPU runs it at dense speed:
neither cuBLAS nor TensorRT has kernels that skip scattered zeros; only 2:4 (and channel
pruning) change what a GPU computes. Fine-tuning keeps the zeros with
``TrainingConfig(keep_zeros=True)``.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.models.structure import refuse_converted

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

NO_SPEEDUP = "unstructured zeros give no GPU speedup: dense kernels multiply them like any other value (only 2:4 and channel pruning change the work)"


@dataclass
class UnstructuredReport:
    """What :func:`prune_unstructured_` zeroed.

    Attributes:
        amount: share of weights asked to go (None when a threshold was given).
        threshold: the magnitude under which weights were zeroed (per layer: see ``layers``).
        scope: ``layer`` (each layer loses ``amount``) or ``global`` (one threshold for all).
        layers: ``{layer: share of its weights that are zero}``.
        sparsity: zeros / weights over the selected layers.
        note: what this sparsity buys on a GPU.
        seconds: wall time.
    """

    amount: float | None
    threshold: float | None
    scope: str
    layers: dict[str, float] = field(default_factory=dict)
    sparsity: float = 0.0
    note: str = NO_SPEEDUP
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 2)}


@torch.no_grad()
def prune_unstructured_(model: nn.Module, amount: float | None = 0.5, threshold: float | None = None, scope: str = "layer", include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> UnstructuredReport:
    """Zero the smallest-magnitude weights of the selected Linear/Conv layers, in place.

    Args:
        model: the dense model.
        amount: share of weights to zero, in [0, 1) (ignored when ``threshold`` is given).
        threshold: zero every weight with ``|w| < threshold`` instead.
        scope: ``layer`` (``amount`` of each layer) or ``global`` (one magnitude cut across layers).
        include / exclude: fnmatch patterns of layer names.

    Raises:
        SparsekitError: bad amount, threshold or scope.
        NoEligibleLayersError: no layer selected.
    """
    start = time.perf_counter()
    if threshold is None and (amount is None or not 0.0 <= amount < 1.0):
        raise SparsekitError(f"amount must be in [0, 1), got {amount}", "give the share of weights to zero, e.g. 0.5, or --threshold")
    if threshold is not None and threshold < 0:
        raise SparsekitError(f"threshold must be >= 0, got {threshold}", "give a weight magnitude, e.g. 1e-3")
    if scope not in ("layer", "global"):
        raise SparsekitError(f"scope must be 'layer' or 'global', got '{scope}'", "use --scope layer or --scope global")

    refuse_converted(model, "unstructured pruning")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, _LAYERS) and any(fnmatch.fnmatchcase(n, p) for p in include) and not any(fnmatch.fnmatchcase(n, p) for p in exclude)}
    if not layers:
        raise NoEligibleLayersError("no Linear/Conv layer matches the include/exclude patterns", "check the layer names with 'sparsekit analyze'")

    def cut(magnitudes: torch.Tensor) -> float:
        k = int(amount * magnitudes.numel())
        return float(magnitudes.flatten().kthvalue(k).values) if k > 0 else -1.0

    if threshold is not None:
        cuts = {n: threshold for n in layers}
    elif scope == "global":
        everything = torch.cat([m.weight.detach().abs().flatten().float() for m in layers.values()])
        cuts = dict.fromkeys(layers, cut(everything))
    else:
        cuts = {n: cut(m.weight.detach().abs().float()) for n, m in layers.items()}
    report = UnstructuredReport(None if threshold is not None else amount, threshold, scope)
    zeros = total = 0
    for name, layer in layers.items():
        w = layer.weight
        keep = w.abs() > cuts[name] if threshold is None else w.abs() >= threshold
        w.mul_(keep.to(w.dtype))
        z = int((w == 0).sum())
        report.layers[name] = round(z / w.numel(), 4)
        zeros, total = zeros + z, total + w.numel()
    report.sparsity = round(zeros / max(total, 1), 4)
    report.seconds = time.perf_counter() - start
    return report
