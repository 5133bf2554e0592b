"""Measured 2:4/dense GEMM speed ratios by shape, and the estimate for a shape not measured.

A table is read from the JSON the kit writes when it measures kernels on a GPU: the GPU suite's
``gpu_suite.json`` (its GEMM rows, fp16 and bf16) or ``sparsekit select``'s selection file (one row
per layer shape). Any object in the file holding integer ``m``, ``k``, ``n`` and a ``speedup``
with a numeric ``ratio`` is a row; its ``dtype`` is its own or the nearest enclosing one.

The estimate for ``(M, K, N, dtype)``, in order:

1. the same ``K x N`` and dtype measured: the ratio interpolated linearly in ``log2 M`` between
   the two nearest measured M (outside the measured M, the nearest M's ratio, said so);
2. no such ``K x N``: the nearest measured ``K x N`` of that dtype (distance in ``log2 K``,
   ``log2 N``), interpolated in M the same way, said so;
3. :meth:`SpeedTable.ideal`: 2.0 for every shape (what 2:4 promises: half the multiply-adds).

The ratio is dense time / 2:4 time of the GEMM (above 1: 2:4 is faster).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sparsekit.errors import SparsekitError

MAX_TABLE_BYTES = 64 * 2**20
MAX_ROWS = 100_000
MAX_DEPTH = 32
IDEAL_RATIO = 2.0


@dataclass(frozen=True)
class SpeedRow:
    """One measured GEMM: ``[M, K] x [K, N]`` in ``dtype``, dense ms / 2:4 ms = ``ratio`` (95%
    interval ``low``..``high`` when measured in paired rounds)."""

    m: int
    k: int
    n: int
    dtype: str
    ratio: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class SpeedEstimate:
    """The expected 2:4/dense ratio of one GEMM and how it was obtained (``how``: ``measured``,
    ``interpolated in M``, ``nearest M (outside the measured M range)``, ``nearest shape KxN``...,
    or ``ideal``)."""

    ratio: float
    how: str


@dataclass
class SpeedTable:
    """Measured ratios (``rows``) from ``source``; an empty table is the ideal 2x."""

    source: str = "ideal"
    rows: list[SpeedRow] = field(default_factory=list)

    @classmethod
    def ideal(cls) -> "SpeedTable":
        """Every 2:4 GEMM twice as fast as dense."""
        return cls()

    @property
    def is_ideal(self) -> bool:
        return not self.rows

    @property
    def label(self) -> str:
        return "ideal 2x" if self.is_ideal else f"measured ({Path(self.source).name})"

    def dtypes(self) -> list[str]:
        return sorted({r.dtype for r in self.rows})

    def check_dtype(self, dtype: str) -> None:
        """Raise unless the table measured ``dtype`` (the ideal table takes any).

        Raises:
            SparsekitError: no row of ``dtype``, naming the ones there are.
        """
        if not self.is_ideal and dtype not in self.dtypes():
            raise SparsekitError(f"speed table '{self.source}' has no {dtype} GEMM rows (it has {', '.join(self.dtypes())})", f"give --dtype {self.dtypes()[0]}, or a table measured in {dtype}")

    def estimate(self, m: int, k: int, n: int, dtype: str = "float16") -> SpeedEstimate:
        """The expected ratio of ``[m, k] x [k, n]`` in ``dtype`` (see the module docstring).

        Raises:
            SparsekitError: the table has rows but none of ``dtype``.
        """
        if self.is_ideal:
            return SpeedEstimate(IDEAL_RATIO, "ideal")
        self.check_dtype(dtype)
        same_dtype = [r for r in self.rows if r.dtype == dtype]
        exact = [r for r in same_dtype if (r.k, r.n) == (k, n)]
        prefix = ""
        if not exact:
            nk, nn = min({(r.k, r.n) for r in same_dtype}, key=lambda kn: (math.log2(kn[0] / k) ** 2 + math.log2(kn[1] / n) ** 2, kn))
            exact = [r for r in same_dtype if (r.k, r.n) == (nk, nn)]
            prefix = f"nearest shape {nk}x{nn}, "
        ratio, how = _interpolate_in_m(exact, m)
        return SpeedEstimate(ratio, prefix + how if prefix else how)


def _interpolate_in_m(rows: list[SpeedRow], m: int) -> tuple[float, str]:
    """Ratio at ``m`` from rows of one ``K x N``: linear in ``log2 M`` between neighbours."""
    by_m: dict[int, float] = {}
    for r in rows:  # a shape measured twice: the first row (the file's order) counts
        by_m.setdefault(r.m, r.ratio)
    ms = sorted(by_m)
    if m in by_m:
        return by_m[m], "measured"
    if m < ms[0] or m > ms[-1]:
        near = ms[0] if m < ms[0] else ms[-1]
        return by_m[near], f"nearest M {near} (outside the measured M {ms[0]}..{ms[-1]})"
    hi = next(x for x in ms if x > m)
    lo = max(x for x in ms if x < m)
    t = (math.log2(m) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
    return by_m[lo] + t * (by_m[hi] - by_m[lo]), f"interpolated in M between {lo} and {hi}"


def load_speed_table(path: str | os.PathLike) -> SpeedTable:
    """Read a speed table from a GPU suite result or a ``sparsekit select`` file.

    Raises:
        SparsekitError: missing, oversized or unreadable file, or one without any GEMM row.
    """
    p = Path(path)
    fix = "give the gpu_suite.json of a GPU run (benchmarks/results/<gpu>/) or a 'sparsekit select' output"
    if not p.is_file():
        raise SparsekitError(f"speed table '{p}' does not exist", fix)
    size = p.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise SparsekitError(f"speed table '{p}' is {size / 2**20:.0f} MiB, over the {MAX_TABLE_BYTES // 2**20} MiB a speed table may have", fix)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SparsekitError(f"speed table '{p}' is not valid JSON ({type(exc).__name__})", fix) from exc
    rows: list[SpeedRow] = []
    _collect(data, None, rows, 0)
    if not rows:
        raise SparsekitError(f"speed table '{p}' holds no GEMM measurement (no object with m, k, n and a speedup ratio)", fix)
    return SpeedTable(str(p), rows)


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 < x < 2**31


def _is_ratio(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x < 1e3


def _collect(node, dtype: str | None, rows: list[SpeedRow], depth: int) -> None:
    """Append every GEMM row under ``node`` (depth-first, the file's order)."""
    if depth > MAX_DEPTH or len(rows) >= MAX_ROWS:
        return
    if isinstance(node, list):
        for item in node:
            _collect(item, dtype, rows, depth + 1)
        return
    if not isinstance(node, dict):
        return
    own = node.get("dtype")
    dtype = own if isinstance(own, str) and len(own) < 32 else dtype
    speedup = node.get("speedup")
    if all(_is_count(node.get(key)) for key in "mkn") and isinstance(speedup, dict) and _is_ratio(speedup.get("ratio")):
        low, high = speedup.get("low"), speedup.get("high")
        rows.append(SpeedRow(node["m"], node["k"], node["n"], dtype or "float16", float(speedup["ratio"]), float(low) if _is_ratio(low) else None, float(high) if _is_ratio(high) else None))
        return
    for value in node.values():
        _collect(value, dtype, rows, depth + 1)
