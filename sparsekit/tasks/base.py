"""The task interface and registry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sparsekit.errors import SparsekitError, TrainingDataError
from sparsekit.models.limits import MAX_SIZE

TASKS: dict[str, Callable[..., "Task"]] = {}

Batch = tuple[tuple, Any]
"""A training batch: ``(model inputs as a tuple of tensors, target or None)``."""


def register_task(name: str):
    """Decorator registering a task factory ``factory(**options) -> Task`` under ``name``."""

    def wrap(factory):
        TASKS[name] = factory
        return factory

    return wrap


def get_task(name: str, **options) -> "Task":
    """Build registered task ``name``.

    Raises:
        SparsekitError: unknown task, or options it does not take (:func:`check_task_options`).
    """
    check_task_options(name, options)
    return TASKS[name](**options)


def check_task_options(name: str, options: dict[str, Any]) -> None:
    """Refuse an unknown task, an option it does not take, or one of another type than its default
    (an int option given ``1e9`` or ``"64"``), before anything is built.

    Raises:
        SparsekitError: one line naming the task or option and what it takes.
    """
    if name not in TASKS:
        raise SparsekitError(f"'{name}' is not a known task", f"use one of: {', '.join(sorted(TASKS))}")
    accepted = inspect.signature(TASKS[name]).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SparsekitError(f"task '{name}' has no option {', '.join(repr(u) for u in unknown)}", f"its options: {', '.join(accepted) or 'none'}")
    for key, value in options.items():
        _check_option(name, key, value, accepted[key].default)


def _check_option(task: str, key: str, value: Any, default: Any) -> None:
    """Refuse an option whose type differs from its default's (an int option given 1e9 or "64"),
    and integer options outside ``[0, MAX_SIZE]``.

    Raises:
        SparsekitError: one line naming the option and the type it takes.
    """
    if default is None or default is inspect.Parameter.empty:
        return
    want = type(default)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if want is float and is_int:
        return
    if not isinstance(value, want) or (want is int and not is_int):
        raise SparsekitError(f"task '{task}' option {key}={value!r} is not of type {want.__name__}", f"give {key} as a {want.__name__}, e.g. {key}={default!r}")
    if is_int and not 0 <= value <= MAX_SIZE:
        raise SparsekitError(f"task '{task}' option {key}={value:,} is outside [0, {MAX_SIZE:,}]", f"give a realistic {key}, e.g. {key}={default!r}")


@dataclass
class EvalResult:
    """Metrics of one evaluation.

    Attributes:
        metrics: name -> value; percentages for accuracy-like metrics.
        per_item: the primary metric's per-item scores (``[N]``, 0/1 for accuracy/recall@1), for
            paired bootstrap comparisons between two models on the same items.
        outputs: the model's outputs on the evaluation inputs (``[N, D]`` float32), the
            reference for fidelity against another model.
    """

    metrics: dict[str, float]
    per_item: np.ndarray
    outputs: np.ndarray = field(repr=False)


class Task:
    """A model family with its data. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: registry name.
        model: default ``(model spec, model args)`` for ``load_model``.
        primary: the metric that sensitivity and the accuracy table rank by (higher is better).
        distill_output: output loss for distillation (``logits`` or ``cosine``).
    """

    name: str = ""
    description: str = ""
    model: tuple[str, dict] = ("", {})
    primary: str = ""
    distill_output: str = "logits"

    def train_batches(self, batch_size: int, seed: int = 0) -> Callable[[int], list[Batch]]:
        """``batches(epoch)``: that epoch's shuffled training batches (same epoch, same order)."""
        raise NotImplementedError

    def calibration(self, samples: int, batch_size: int = 16) -> list[tuple]:
        """Calibration batches (model inputs only), never drawn from the evaluation split."""
        raise NotImplementedError

    def task_loss(self, model, batch: Batch):
        """The supervised loss of ``batch``, or None when the task has no labels (distill only)."""
        return None

    def evaluate(self, model, reference: EvalResult | None = None) -> EvalResult:
        """Evaluate ``model`` on the held-out split; with ``reference`` (the dense model's result),
        also its fidelity to that model."""
        raise NotImplementedError

    def check_fits(self, model) -> None:
        """Raise :class:`TrainingDataError` with one clear line when the task's data does not fit ``model``."""
        check_batch_fits(model, (self.calibration(2, 2)[0], None), self)

    def feature_layers(self, model) -> list[str]:
        """Module names whose outputs a feature-distillation loss matches."""
        return []


def check_batch_fits(model, batch: Batch, task: "Task") -> None:
    """Run one batch of ``task``'s data through ``model`` (no grad); a failure becomes one clear line.

    Raises:
        TrainingDataError: the batch's shapes/dtypes do not fit the model.
    """
    import torch

    inputs = batch[0]
    shapes = ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in inputs)
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as exc:  # noqa: BLE001 - any failure here means the data does not fit
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        spec, args = task.model
        made = " ".join([spec] + [f"--model-arg {k}={v}" for k, v in args.items()])
        raise TrainingDataError(f"task '{task.name}' data of shape {shapes} does not fit the model: {reason}", f"use a model built for this data (omit MODEL to get '{made}')") from exc
