"""Each layer's trade: the metric 2:4 costs it against the time it saves, and the end-to-end
speedup of a set of 2:4 layers.

Time is estimated from FLOPs: a layer's share of the dense model's time is its share of the model's
FLOPs (attention products and every counted op included), and its 2:4 GEMM takes ``1 / ratio`` of
its dense time. So a layer saves ``flop_share x (1 - 1/ratio)`` of the model's time (negative when
its 2:4 kernel is slower), and a set of 2:4 layers gives the Amdahl speedup
``1 / (1 - sum of their savings)``. Memory-bound work outside the counted FLOPs makes the real
gain smaller; the kit's benchmarks measure it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sparsekit.plan.speed_table import SpeedEstimate


@dataclass
class LayerTrade:
    """One 2:4-able layer.

    Attributes:
        name: module path.
        flop_share: share of the model's FLOPs at the deployment batch (0..1).
        gemm: ``(M, K, N)`` of its GEMM at that batch.
        speed: the expected 2:4/dense ratio of that GEMM and where it comes from.
        cost: metric lost with only this layer 2:4 (metric units, >= 0; a gain counts as 0);
            None when not measured (a layer whose 2:4 GEMM saves no time is never tried).
    """

    name: str
    flop_share: float
    gemm: tuple[int, int, int]
    speed: SpeedEstimate
    cost: float | None = None

    @property
    def time_saved(self) -> float:
        """Share of the dense model's time this layer saves when 2:4 (negative: it loses time)."""
        return self.flop_share * (1.0 - 1.0 / self.speed.ratio)

    @property
    def cost_per_time(self) -> float:
        """Metric lost per unit of model time saved (infinite when it saves none)."""
        return (self.cost or 0.0) / self.time_saved if self.time_saved > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "gemm": list(self.gemm), "time_saved": round(self.time_saved, 6), "cost_per_time": None if math.isinf(self.cost_per_time) else round(self.cost_per_time, 4)}


def keep_dense_order(trades: list[LayerTrade]) -> tuple[list[str], list[str]]:
    """The order in which layers go back to dense, and the layers that never go 2:4.

    Returns:
        ``(order, never)``: ``order`` lists the layers that save time, worst metric-per-time first
        (ties: larger cost first, then name); ``never`` lists those whose 2:4 GEMM saves no time
        (ratio <= 1), kept dense at every point.
    """
    saving = [t for t in trades if t.time_saved > 0]
    order = sorted(saving, key=lambda t: (-t.cost_per_time, -(t.cost or 0.0), t.name))
    return [t.name for t in order], sorted(t.name for t in trades if t.time_saved <= 0)


def expected_speedup(trades: dict[str, LayerTrade], sparse: set[str] | list[str]) -> float:
    """Amdahl speedup of the model with ``sparse`` layers 2:4 (see the module docstring)."""
    saved = sum(trades[name].time_saved for name in sparse)
    return 1.0 / max(1.0 - saved, 1e-9)
