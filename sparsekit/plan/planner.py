"""The accuracy/speed plan: which layers go 2:4, chosen by what each costs and what it saves.

1. The model is analysed at the deployment batch (each layer's FLOP share and GEMM shape) and each
   GEMM's 2:4/dense ratio is looked up in the speed table (measured, or the ideal 2x).
2. Every eligible layer's 2:4 weights are computed once, all layers together. ModelOpt's SparseGPT
   collects every layer's Hessian in one pass of the *dense* model, so a layer's 2:4 weights do not
   depend on which other layers are 2:4: the model with any subset 2:4 is the dense model with those
   layers' weights swapped in, exactly what ``sparsify --include`` of that subset computes (without
   channel permutation, which couples layers). Each candidate then costs one evaluation.
3. Each layer alone is evaluated (its metric cost); layers whose GEMM saves no time are kept dense
   throughout; the others go back to dense in order of metric lost per unit of time saved, worst
   first (:func:`~sparsekit.plan.trade.keep_dense_order`), optionally refined greedily where layers
   interact (``refine``).
4. Points along that order are evaluated one-shot; the Pareto frontier of (expected speedup,
   metric) is marked; a few frontier points are recovered (block reconstruction, then
   distillation from the dense model, as configured); every frontier point is also evaluated on
   the extra splits (its best model: reconstructed or distilled when that raised the metric);
   the chosen point is the fastest whose best model is within ``max_drop``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn

from sparsekit.analyze.gemm_shapes import layer_gemm_shape
from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.models.loaded import LoadedModel
from sparsekit.plan.config import PlanConfig
from sparsekit.plan.speed_table import SpeedTable
from sparsekit.plan.trade import LayerTrade, expected_speedup, keep_dense_order
from sparsekit.recover.finetune import TrainingConfig
from sparsekit.recover.reconstruct import reconstruct_blocks_
from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
from sparsekit.sparsify.methods import get_method
from sparsekit.sparsify.sparsify import sparsify_
from sparsekit.tasks.base import EvalResult, Task
from sparsekit.tasks.metrics import paired_difference


def best_of(diff: dict | None, *recovered: tuple[str, dict | None]) -> tuple[str, dict | None]:
    """The model a point stands for: ``("one-shot", diff)``, or a recovered model's ``(name, its
    diff)`` when it raised the primary metric above every model before it in the list. The models
    are compared on the evaluation split, so the better one's number is slightly optimistic when
    they are close.

    Args:
        diff: the one-shot model's paired difference to dense (None: the dense point).
        recovered: ``(name, result)`` pairs, e.g. ``("reconstructed", {...})``, ``("distilled",
            {...})``; a result holds ``"diff"`` and may be None (not run).
    """
    best = ("one-shot", diff)
    for name, result in recovered:
        if result and best[1] and result["diff"]["diff"] > best[1]["diff"]:
            best = (name, result["diff"])
    return best


@dataclass
class PlanPoint:
    """One candidate plan.

    Attributes:
        sparse: layers 2:4 at this point.
        kept_dense: layers of the order kept dense (the never-faster layers are not listed).
        step: how the point was reached (``all 2:4``, ``+ keep <layer> dense``, ``dense``).
        speedup: expected end-to-end speedup under the plan's speed table.
        speedup_ideal: the same with every 2:4 GEMM 2x (the Amdahl bound).
        metrics: the task's metrics one-shot (fidelity/agreement against the dense model).
        diff: paired difference of the primary metric to dense (metric units), with its interval.
        frontier: on the Pareto frontier of (speedup, one-shot primary metric).
        reconstructed: after block reconstruction: ``{"metrics", "diff", "steps", "seconds", "blocks"}``.
        distilled: after a short distillation (from the reconstructed model when there is one):
            ``{"metrics", "diff", "epochs", "steps", "seconds"}``.
        robustness: per extra split: ``{"model": "one-shot"|"reconstructed"|"distilled", "metrics", "diff"}``.
        seconds: time spent on this point's evaluations.
    """

    sparse: list[str]
    kept_dense: list[str]
    step: str
    speedup: float
    speedup_ideal: float
    metrics: dict
    diff: dict | None
    frontier: bool = False
    distilled: dict | None = None
    reconstructed: dict | None = None
    robustness: dict = field(default_factory=dict)
    seconds: float = 0.0

    def _best(self) -> tuple[str, dict | None]:
        return best_of(self.diff, ("reconstructed", self.reconstructed), ("distilled", self.distilled))

    @property
    def best(self) -> str:
        """The model this point stands for: see :func:`best_of`."""
        return self._best()[0]

    @property
    def loss(self) -> float:
        """Points lost against dense by this point's best model (:attr:`best`)."""
        d = self._best()[1]
        return -d["diff"] if d else 0.0


@dataclass
class PlanReport:
    """What ``plan`` measured and chose (``points`` fastest first; ``chosen`` indexes them)."""

    task: str
    primary: str
    rank_by: str
    config: dict
    speed_source: str
    dense: dict
    trades: list[LayerTrade]
    order: list[str]
    never: list[str]
    points: list[PlanPoint]
    chosen: int
    evaluations: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def include(self) -> list[str]:
        """The chosen point's 2:4 layers: ``sparsify --include-from plan.json`` reads this list."""
        return list(self.points[self.chosen].sparse)

    @property
    def exclude(self) -> list[str]:
        chosen = self.points[self.chosen]
        return sorted(set(chosen.kept_dense) | set(self.never))

    def to_dict(self) -> dict:
        return {
            "task": self.task, "primary": self.primary, "rank_by": self.rank_by, "config": self.config, "speed_source": self.speed_source, "dense": self.dense,
            "include": self.include, "exclude": self.exclude, "chosen": self.chosen, "order": self.order, "never": self.never,
            "trades": [t.to_dict() for t in self.trades], "points": [{**asdict(p), "best": p.best, "loss": round(p.loss, 4)} for p in self.points],
            "evaluations": self.evaluations, "seconds": round(self.seconds, 1), "notes": self.notes,
        }


def _metrics(result: EvalResult) -> dict:
    return {k: round(v, 4) for k, v in result.metrics.items()}


class _Evaluator:
    """Evaluates the model with a subset of layers 2:4 (weights swapped in), caching by subset."""

    def __init__(self, model: nn.Module, sparse_weights: dict, task: Task, dense: EvalResult, cache: dict | None = None) -> None:
        self.model, self.weights, self.task, self.dense = model, sparse_weights, task, dense
        self.cache: dict[frozenset, tuple[EvalResult, float]] = {} if cache is None else cache
        self.calls = 0

    def with_sparse(self, names) -> nn.Module:
        """A copy of the dense model with ``names``' 2:4 weights."""
        trial = copy.deepcopy(self.model)
        modules = dict(trial.named_modules())
        for name in names:
            modules[name].weight.data.copy_(self.weights[name])
        return trial.eval()

    def __call__(self, names) -> tuple[EvalResult, float]:
        key = frozenset(names)
        self.calls += 1
        if key not in self.cache:
            start = time.perf_counter()
            result = self.task.evaluate(self.with_sparse(key), self.dense)
            self.cache[key] = (result, time.perf_counter() - start)
        return self.cache[key]


def layer_trades(loaded: LoadedModel, names: list[str], speed: SpeedTable, batch: int, dtype: str) -> dict[str, LayerTrade]:
    """Each named layer's FLOP share, GEMM and expected 2:4 ratio at ``batch`` (cost still 0).

    Raises:
        NoEligibleLayersError: none of ``names`` runs a GEMM the analysis could size.
    """
    analysis = analyze_model(LoadedModel(loaded.model, loaded.inputs.with_batch(batch), loaded.source))
    trades = {}
    for layer in analysis.layers:
        if layer.name in names and layer.gemm_rows and layer.flop_share:
            g = layer_gemm_shape(layer.name, layer.kind, layer.shape, layer.gemm_rows)
            trades[layer.name] = LayerTrade(layer.name, layer.flop_share, (g.m, g.k, g.n), speed.estimate(g.m, g.k, g.n, dtype))
    if not trades:
        raise NoEligibleLayersError("no 2:4-able layer of this model runs a GEMM at the analysed input", "see 'sparsekit analyze' for the layers and their FLOPs")
    return trades


def sparse_weights_once(model: nn.Module, method: str, calib) -> tuple[dict, list[str]]:
    """Every eligible layer's 2:4 weights, computed in one ``sparsify_`` of a copy of ``model``.

    Returns:
        ``(weights, notes)``: module path -> 2:4 weight tensor (masked, SparseGPT-updated), and
        what the sparsify report said about layers it could not take.
    """
    sparse, report = sparsify_(copy.deepcopy(model), method, calib=calib)
    modules = dict(sparse.named_modules())
    weights = {name: modules[name].weight.detach().clone() for name in report.sparsified}
    notes = [f"{d.name}: {d.status} ({d.reason})" for d in report.layers if d.status in ("fallback",)]
    return weights, notes


def _step_indices(speeds: list[float], points: int) -> list[int]:
    """Which steps of the order to evaluate: all when ``points`` is 0 or covers them, else
    ``points`` steps spread evenly in expected speed between the fastest and dense (step 0, all
    2:4, always)."""
    n = len(speeds)
    if points == 0 or points >= n:
        return list(range(n))
    top = speeds[0]
    targets = [top - (top - 1.0) * i / points for i in range(points)]
    chosen = {min(range(n), key=lambda k: (abs(speeds[k] - t), k)) for t in targets}
    return sorted(chosen | {0})


def pareto(points: list[PlanPoint]) -> None:
    """Mark the points no other point beats on both expected speedup and one-shot metric."""
    best = -math.inf
    for p in sorted(points, key=lambda p: (-p.speedup, -(p.diff or {"diff": 0.0})["diff"])):
        value = (p.diff or {"diff": 0.0})["diff"]
        p.frontier = value > best
        best = max(best, value)


def _distill_choice(points: list[PlanPoint], max_drop: float, count: int) -> list[PlanPoint]:
    """The frontier points worth distilling: those faster than the fastest one-shot point within
    ``max_drop``, spread evenly from the nearest to the fastest (``count`` of them)."""
    within = [p for p in points if p.loss <= max_drop]
    floor = max((p.speedup for p in within), default=1.0)
    faster = sorted((p for p in points if p.frontier and p.speedup > floor + 1e-9), key=lambda p: p.speedup)
    if count <= 0 or not faster:
        return []
    if count == 1 or len(faster) <= count:
        return faster[:count]
    picks = {round(i * (len(faster) - 1) / (count - 1)) for i in range(count)}
    return [faster[i] for i in sorted(picks)]


def plan_sparsity(
    loaded: LoadedModel,
    task: Task,
    config: PlanConfig,
    speed: SpeedTable | None = None,
    extra_tasks: dict[str, Task] | None = None,
    progress: Callable[[str], None] = lambda message: None,
    cache: dict | None = None,
) -> PlanReport:
    """Plan which layers go 2:4 (see the module docstring).

    Args:
        loaded: the dense model and its inputs (left unchanged).
        task: evaluation, calibration and distillation data; its primary metric is the accuracy.
        config: the plan's settings.
        speed: measured GEMM ratios (:func:`~sparsekit.plan.speed_table.load_speed_table`); None:
            the ideal 2x.
        extra_tasks: the same task on other splits (e.g. ``heldout``, ``ood``) evaluated at every
            frontier point.
        progress: called with a short message before each evaluation or training run.
        cache: evaluations by 2:4 layer set, shared between plans of the same model, task and
            method (e.g. one with measured speeds, one with the ideal 2x); filled as it goes.

    Returns:
        A :class:`PlanReport`; ``report.include`` is the chosen point's layer list.

    Raises:
        NoEligibleLayersError: no layer can be 2:4-sparsified, or none runs a GEMM.
        SparsekitError: ``rank_by`` is not a metric of the task.
    """
    start = time.perf_counter()
    speed = speed or SpeedTable.ideal()
    speed.check_dtype(config.dtype)  # before any evaluation
    ideal = SpeedTable.ideal()
    model = loaded.model.eval()
    task.check_fits(model)
    if config.reconstruct_steps and config.distill_points and not task.feature_layers(model):
        raise SparsekitError(f"task '{task.name}' names no blocks of this model to reconstruct", "leave --reconstruct-steps at 0 for this model")
    progress("dense model")
    dense = task.evaluate(model)
    rank_by = config.rank_by or task.primary
    dense_rank = dense.metrics.get(rank_by)
    if dense_rank is None:
        against_itself = task.evaluate(model, dense).metrics  # fidelity/agreement: the dense model against itself
        dense_rank = against_itself.get(rank_by)
        if dense_rank is None:
            raise SparsekitError(f"task '{task.name}' has no metric '{rank_by}'", f"give --rank-by one of: {', '.join(against_itself)}")
    calib = task.calibration(config.calib_samples) if get_method(config.method).needs_calibration else None
    progress(f"2:4 weights of every layer ({config.method})")
    weights, notes = sparse_weights_once(model, config.method, calib)
    trades = layer_trades(loaded, list(weights), speed, config.batch, config.dtype)
    ideal_trades = {name: LayerTrade(t.name, t.flop_share, t.gemm, ideal.estimate(*t.gemm, config.dtype)) for name, t in trades.items()}
    evaluate = _Evaluator(model, weights, task, dense, cache)
    saving = [name for name, t in trades.items() if t.time_saved > 0]
    for i, name in enumerate(saving):
        progress(f"layer {i + 1}/{len(saving)} alone: {name}")
        result, _ = evaluate([name])
        trades[name].cost = max(0.0, dense_rank - result.metrics[rank_by])
    order, never = keep_dense_order(list(trades.values()))
    if not order:
        notes.append(f"no layer's 2:4 GEMM is faster than dense at batch {config.batch} ({config.dtype}) by {speed.label}: the plan keeps the model dense")

    def point(kept: list[str], step: str) -> PlanPoint:
        sparse = [n for n in order if n not in kept]
        if not sparse:
            return PlanPoint([], list(kept), "dense", 1.0, 1.0, _metrics(dense), None)
        result, seconds = evaluate(sparse)
        return PlanPoint(sparse, list(kept), step, round(expected_speedup(trades, sparse), 4), round(expected_speedup(ideal_trades, sparse), 4), _metrics(result), paired_difference(dense.per_item, result.per_item).to_dict(), seconds=round(seconds, 1))

    points: list[PlanPoint] = []
    if config.refine <= 1:
        speeds = [expected_speedup(trades, order[k:]) for k in range(len(order))]
        for k in _step_indices(speeds, config.points):
            progress(f"point {len(points) + 1}: {len(order) - k} layers 2:4")
            points.append(point(order[:k], "all 2:4" if k == 0 else f"+ keep {order[k - 1]} dense" + (f" (and {k - 1} before it)" if k > 1 else "")))
            if points[-1].loss <= 0:
                break
    else:
        kept: list[str] = []
        points.append(point([], "all 2:4")) if order else None
        while points and points[-1].loss > 0 and len(kept) < len(order):
            window = [n for n in order if n not in kept][: config.refine]
            sparse_now = [n for n in order if n not in kept]
            base = points[-1].metrics[rank_by] if rank_by in points[-1].metrics else dense_rank

            def gain_per_time(name: str) -> float:
                progress(f"refining: keep {name} dense?")
                result, _ = evaluate([n for n in sparse_now if n != name])
                return (result.metrics[rank_by] - base) / max(trades[name].time_saved, 1e-12)

            best = max(window, key=lambda n: (gain_per_time(n), -order.index(n)))
            kept.append(best)
            points.append(point(list(kept), f"+ keep {best} dense (refined over {len(window)})"))
    if not points or points[-1].sparse:
        points.append(PlanPoint([], list(order), "dense", 1.0, 1.0, _metrics(dense), None))
    pareto(points)
    for p in _distill_choice(points, config.max_drop, config.distill_points if config.reconstruct_steps or config.distill_epochs else 0):
        _recover(evaluate, p, task, config, model, dense, progress)
    extra_tasks = extra_tasks or {}
    references = {split: t.evaluate(model) for split, t in extra_tasks.items()} if any(p.frontier for p in points) else {}
    for p in points:
        if not p.frontier:
            continue
        recovered = {name: r.pop("_model") for name, r in (("reconstructed", p.reconstructed), ("distilled", p.distilled)) if r}
        trial = recovered.get(p.best) or evaluate.with_sparse(p.sparse)
        for split, t in extra_tasks.items():
            progress(f"{split}: the {p.speedup:.2f}x point")
            r = t.evaluate(trial, references[split])
            p.robustness[split] = {"model": p.best, "metrics": _metrics(r), "diff": paired_difference(references[split].per_item, r.per_item).to_dict() if p.sparse else None}
    for p in points:
        (p.distilled or {}).pop("_model", None)
        (p.reconstructed or {}).pop("_model", None)
    within = [i for i, p in enumerate(points) if p.loss <= config.max_drop]
    chosen = max(within, key=lambda i: (points[i].speedup, -points[i].loss))
    return PlanReport(task.name, task.primary, rank_by, config.model_dump(mode="json"), speed.source, _metrics(dense), list(trades.values()), order, never, points, chosen, evaluate.calls, time.perf_counter() - start, notes)


def _recover(evaluate: _Evaluator, p: PlanPoint, task: Task, config: PlanConfig, teacher: nn.Module, dense: EvalResult, progress: Callable[[str], None]) -> None:
    """Recover point ``p``'s model with its 2:4 masks fixed: block reconstruction from the dense
    model (``p.reconstructed``), then distillation from it (``p.distilled``), as configured."""
    student, _ = sparsify_(evaluate.with_sparse(p.sparse), "magnitude", include=p.sparse)  # the 2:4 pattern of the swapped weights, as masks
    if config.reconstruct_steps:
        progress(f"reconstructing the {p.speedup:.2f}x point ({len(p.sparse)} layers 2:4) block by block")
        start = time.perf_counter()
        rec = reconstruct_blocks_(student, teacher, task.feature_layers(student), task.calibration(config.reconstruct_samples), config.reconstruct_steps, config.reconstruct_lr)
        result = task.evaluate(student, dense)
        p.reconstructed = {"metrics": _metrics(result), "diff": paired_difference(dense.per_item, result.per_item).to_dict(), "steps": config.reconstruct_steps,
                           "seconds": round(time.perf_counter() - start, 1), "blocks": rec.to_dict()["blocks"], "_model": copy.deepcopy(student) if config.distill_epochs else student}
    if config.distill_epochs:
        progress(f"distilling the {p.speedup:.2f}x point ({len(p.sparse)} layers 2:4)")
        start = time.perf_counter()
        student, report = finetune_on_task_(student, task, TrainingConfig(epochs=config.distill_epochs, lr=config.lr, weight_decay=0.01), config.batch_size, teacher=teacher, distill=DistillConfig(features=config.features))
        result = task.evaluate(student, dense)
        p.distilled = {"metrics": _metrics(result), "diff": paired_difference(dense.per_item, result.per_item).to_dict(), "epochs": config.distill_epochs, "steps": report.steps,
                       "seconds": round(time.perf_counter() - start, 1), "from": "reconstructed" if p.reconstructed else "one-shot", "_model": student}
