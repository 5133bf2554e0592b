"""Low-rank factorisation: a Linear ``W [out, in]`` becomes ``up(down(x))`` with ``down [r, in]`` and
``up [out, r]`` from the truncated SVD ``W ~ U_r S_r V_r^T`` (``down = sqrt(S_r) V_r^T``,
``up = U_r sqrt(S_r)``), the best rank-r approximation in Frobenius norm.

A layer pays off only when ``r (in + out) < in * out``; the ranks are rounded to multiples of
``round_to`` (Tensor Core alignment) and a layer whose factorisation would not be smaller is left
alone (and said so). Both factors are ordinary Linear layers, so 2:4 and INT8 apply to them too.
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.models.low_rank import LowRankLinear, replace_with_low_rank_
from sparsekit.models.structure import record_edit, refuse_converted
from sparsekit.analyze.ties import tied_weights


@dataclass
class LowRankReport:
    """What :func:`factorize_` did.

    Attributes:
        rank_fraction: the rank asked for, as a share of ``min(in, out)``.
        layers: ``{layer: {"shape": [out, in], "rank": r, "energy": share of sum(S^2) kept}}`` factorised.
        skipped: ``{layer: why}`` of selected layers left as they were.
        params: ``[before, after]`` parameter counts.
        seconds: wall time.
    """

    rank_fraction: float
    layers: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    params: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 2)}


def low_rank_size(out_features: int, in_features: int, fraction: float, round_to: int) -> int:
    """The rank for a ``[out, in]`` weight: ``fraction * min(out, in)`` rounded up to ``round_to``."""
    full = min(out_features, in_features)
    rank = max(1, math.ceil(fraction * full))
    return min(full, math.ceil(rank / round_to) * round_to)


@torch.no_grad()
def factorize_(loaded, rank_fraction: float = 0.5, include: Sequence[str] = ("*",), exclude: Sequence[str] = (), round_to: int = 8) -> LowRankReport:
    """Replace selected Linear layers of ``loaded.model`` by their truncated-SVD factorisation, in place.

    Args:
        loaded: a :class:`~sparsekit.models.loaded.LoadedModel`; the change is recorded in
            ``loaded.source["edits"]`` for checkpoints.
        rank_fraction: rank as a share of ``min(in, out)``, in (0, 1).
        include / exclude: fnmatch patterns of Linear layer names.
        round_to: ranks are multiples of this.

    Raises:
        SparsekitError: a fraction outside (0, 1).
        NoEligibleLayersError: no selected layer gets smaller.
    """
    if not 0.0 < rank_fraction < 1.0:
        raise SparsekitError(f"rank fraction must be in (0, 1), got {rank_fraction}", "give the share of the full rank to keep, e.g. 0.5")
    start = time.perf_counter()
    model = loaded.model
    refuse_converted(model, "low-rank factorisation")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, LowRankLinear)}
    tied = tied_weights(model, linears)
    report = LowRankReport(rank_fraction, params=[sum(p.numel() for p in model.parameters())])
    ranks = {}
    for name, layer in linears.items():
        if not any(fnmatch.fnmatchcase(name, p) for p in include) or any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        out_f, in_f = layer.weight.shape
        rank = low_rank_size(out_f, in_f, rank_fraction, round_to)
        if name in tied:
            report.skipped[name] = "its weight is tied to another parameter"
        elif rank * (in_f + out_f) >= in_f * out_f:
            report.skipped[name] = f"rank {rank} factors ({rank * (in_f + out_f)} weights) are not smaller than the {out_f}x{in_f} layer"
        else:
            ranks[name] = rank
    if not ranks:
        raise NoEligibleLayersError(f"no selected Linear layer of {loaded.name} gets smaller at rank fraction {rank_fraction}", "lower the rank fraction or select wider layers")
    originals = {n: (linears[n].weight.detach().float(), None if linears[n].bias is None else linears[n].bias.detach().clone()) for n in ranks}
    replace_with_low_rank_(model, ranks)
    for name, rank in ranks.items():
        weight, bias = originals[name]
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        root = s[:rank].sqrt()
        new = model.get_submodule(name)
        new.down.weight.copy_((root[:, None] * vh[:rank]).to(new.down.weight.dtype))
        new.up.weight.copy_((u[:, :rank] * root[None, :]).to(new.up.weight.dtype))
        if bias is not None:
            new.up.bias.copy_(bias)
        report.layers[name] = {"shape": list(weight.shape), "rank": rank, "energy": round(float((s[:rank] ** 2).sum() / (s**2).sum()), 4)}
    record_edit(loaded, {"kind": "low_rank", "layers": ranks})
    report.params.append(sum(p.numel() for p in model.parameters()))
    report.seconds = time.perf_counter() - start
    return report
