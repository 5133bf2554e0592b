"""Per-layer sensitivity to 2:4: sparsify one layer (or group) at a time, measure the task metric.

The result ranks layers by the metric they cost and turns a threshold into an exclude list that
``sparsekit sparsify --exclude-from`` and recipes (``sparsify.exclude_from``) read directly:
"keep dense every layer whose own loss exceeds X points".
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.sparsify.methods import get_method
from sparsekit.sparsify.select import candidate_layers, select_layers
from sparsekit.tasks.base import Task
from sparsekit._io import atomic_path, write_json_atomic, write_text_atomic
from sparsekit.sparsify.sparsify import sparsify_
from sparsekit._lazy import lazy_import

matplotlib = lazy_import("matplotlib")
plt = lazy_import("matplotlib.pyplot")

GROUPINGS = ("layer", "block", "kind")
"""``layer``: each layer alone; ``block``: layers sharing the path up to the first number
(one transformer layer / ResNet stage); ``kind``: layers sharing their last name (all ``query``...)."""


@dataclass
class SensitivityRow:
    """Metric with one group sparsified.

    Attributes:
        group: group name (the layer itself for ``layer`` grouping).
        layers: layers sparsified together.
        metric: the task's primary metric with them sparsified.
        delta: ``metric - dense metric`` (negative = loss), in the metric's unit.
        seconds: sparsify + evaluation time.
    """

    group: str
    layers: list[str]
    metric: float
    delta: float
    seconds: float
    extra: dict = field(default_factory=dict)


@dataclass
class SensitivityReport:
    """Rows sorted by loss (largest first)."""

    task: str
    method: str
    grouping: str
    primary: str
    dense: float
    rows: list[SensitivityRow] = field(default_factory=list)
    threshold: float | None = None

    def exclude(self, threshold: float | None = None) -> list[str]:
        """Layers of every group whose loss exceeds ``threshold`` (metric units), e.g. 0.5 points."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            return []
        return sorted({name for row in self.rows if -row.delta > t for name in row.layers})

    def to_dict(self) -> dict:
        return {"task": self.task, "method": self.method, "grouping": self.grouping, "primary": self.primary, "dense": self.dense, "threshold": self.threshold, "exclude": self.exclude(), "rows": [asdict(r) for r in self.rows]}


def group_layers(names: list[str], grouping: str) -> dict[str, list[str]]:
    """Group layer names by ``grouping`` (see :data:`GROUPINGS`), keeping first-seen order."""
    if grouping not in GROUPINGS:
        raise SparsekitError(f"unknown grouping '{grouping}'", f"use one of: {', '.join(GROUPINGS)}")
    groups: dict[str, list[str]] = {}
    for name in names:
        if grouping == "layer":
            key = name
        elif grouping == "kind":
            key = "*." + name.rsplit(".", 1)[-1] if "." in name else name
        else:
            m = re.match(r"^(.*?\.\d+)(\.|$)", name)
            key = m.group(1) if m else name
        groups.setdefault(key, []).append(name)
    return groups


def layer_sensitivity(
    model: nn.Module,
    task: Task,
    method: str = "magnitude",
    grouping: str = "layer",
    include=("*",),
    exclude=(),
    calib: list[tuple] | None = None,
    progress: Callable[[int, int, str], None] = lambda i, n, name: None,
) -> SensitivityReport:
    """Measure the task metric with each group of eligible layers 2:4-sparsified alone.

    Args:
        model: the dense model (left unchanged; each trial works on a copy).
        task: gives the evaluation and the primary metric (higher is better).
        method: ``magnitude`` or ``sparsegpt``.
        grouping: ``layer``, ``block`` or ``kind``.
        include / exclude: fnmatch patterns narrowing the candidate layers.
        calib: calibration batches (``sparsegpt``; the task's calibration split when None).
        progress: ``progress(done, total, group)`` after each trial.

    Returns:
        A :class:`SensitivityReport`, rows sorted by loss (largest first).

    Raises:
        NoEligibleLayersError: no candidate layer passes the method's shape rules.
    """
    task.check_fits(model)
    spec = get_method(method)
    if spec.needs_calibration and calib is None:
        calib = task.calibration(128)
    layers = candidate_layers(model)
    selected, _ = select_layers(list(layers), include, exclude)
    eligible = [n for n in layers if n in selected and spec.will_sparsify(type(layers[n]).__name__, tuple(layers[n].weight.shape), getattr(layers[n], "groups", 1)).ok]
    if not eligible:
        raise NoEligibleLayersError(f"no layer of this model can be 2:4-sparsified by '{method}'", "check --include/--exclude, or see 'sparsekit analyze'")
    dense = task.evaluate(model)
    base = dense.metrics[task.primary]
    report = SensitivityReport(task.name, method, grouping, task.primary, round(base, 4))
    groups = group_layers(eligible, grouping)
    for i, (group, names) in enumerate(groups.items()):
        start = time.perf_counter()
        trial, _ = sparsify_(copy.deepcopy(model), method, include=names, calib=calib)
        result = task.evaluate(trial, dense)
        metric = result.metrics[task.primary]
        extra = {k: round(v, 4) for k, v in result.metrics.items() if k != task.primary}
        report.rows.append(SensitivityRow(group, names, round(metric, 4), round(metric - base, 4), round(time.perf_counter() - start, 2), extra))
        progress(i + 1, len(groups), group)
    report.rows.sort(key=lambda r: (r.delta, r.group))
    return report


def write_sensitivity(report: SensitivityReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``sensitivity.json`` (rows + ``exclude`` list), ``sensitivity.md`` and
    ``sensitivity.png`` (horizontal bars of the loss per group) into ``out_dir``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(out / "sensitivity.json", report.to_dict())}
    lines = [f"# 2:4 sensitivity ({report.method}, per {report.grouping}) on task {report.task}", "", f"Dense {report.primary}: {report.dense:.2f}. Each row sparsifies only its layers.", ""]
    lines += [f"| {report.grouping} | layers | {report.primary} | change | excluded | seconds |", "|---|---|---|---|---|---|"]
    excluded = set(report.exclude())
    for r in report.rows:
        lines.append(f"| {r.group} | {len(r.layers)} | {r.metric:.2f} | {r.delta:+.2f} | {'yes' if excluded & set(r.layers) else ''} | {r.seconds:.1f} |")
    if report.threshold is not None:
        lines += ["", f"Exclude list (loss > {report.threshold} points): {len(excluded)} layers, in sensitivity.json ('exclude'); use it with `sparsekit sparsify --exclude-from sensitivity.json`."]
    paths["md"] = write_text_atomic(out / "sensitivity.md", "\n".join(lines) + "\n")
    with atomic_path(out / "sensitivity.png") as tmp:
        _plot(report, tmp)
    paths["png"] = out / "sensitivity.png"
    return paths


def _plot(report: SensitivityReport, path: Path) -> None:
    matplotlib.use("Agg")
    rows = report.rows
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(rows) + 1)))
    losses = [-r.delta for r in rows]
    colours = ["#d62728" if report.threshold is not None and loss > report.threshold else "#76b900" for loss in losses]
    ax.barh(range(len(rows)), losses, color=colours)
    if report.threshold is not None:
        ax.axvline(report.threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {report.threshold}")
        ax.legend(loc="lower right")
    ax.set_yticks(range(len(rows)), [r.group for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{report.primary} lost with only this {report.grouping} 2:4-sparse (points)")
    ax.set_title(f"2:4 sensitivity, {report.method}, task {report.task} (dense {report.dense:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
