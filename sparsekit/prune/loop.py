"""The iterative loop: prune -> fine-tune (distilled from the unpruned model) -> prune again.

Each step removes channels until a cumulative share of the *original* widths is gone (the
``schedule``, e.g. ``[0.125, 0.25, 0.375, 0.5]``), then fine-tunes on the task with the unpruned
model as teacher, then evaluates. The loop stops at the first step whose primary metric falls more
than ``max_drop`` points below the unpruned model's; the result is the last step within budget.
Every finished step is saved (``step<N>.pt`` and ``loop.json`` in the work folder), so an
interrupted loop resumes after its last finished step.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Callable

from pydantic import Field, field_validator

from sparsekit._io import write_json_atomic
from sparsekit.config import StrictConfig
from sparsekit.errors import SparsekitError, TrainingStateError
from sparsekit.recover.finetune import FineTuneConfig

log = logging.getLogger(__name__)

STATE = "loop.json"


class ChannelSettings(StrictConfig):
    """How each step ranks and rounds channels (see :func:`sparsekit.prune.channels.prune_channels_`)."""

    importance: str = Field("l1", pattern="^(l1|l2|bn|taylor)$", description="l1 | l2 filter norm, bn (BatchNorm |gamma|), taylor (|w * grad|, needs labels)")
    round_to: int = Field(16, ge=1, description="widths kept at multiples of this (16: 2:4 and INT8 can follow)")
    exclude: list[str] = Field(default_factory=list, description="fnmatch patterns of layers that keep their width")
    global_ranking: bool = Field(False, description="rank channels across layers instead of the same share per layer")
    head_share: float | None = Field(None, ge=0, lt=1, description="share of attention heads removed by the last step (default: heads follow the channel share)")


class LoopConfig(StrictConfig):
    """The prune -> fine-tune schedule."""

    schedule: list[float] = Field(description="cumulative share of the original channels removed after each step, increasing, each in (0, 1)")
    max_drop: float = Field(1.0, ge=0, description="stop when the primary metric is more than this many points below the unpruned model")
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    finetune: FineTuneConfig = Field(default_factory=lambda: FineTuneConfig(epochs=2, lr=1e-3), description="fine-tuning after each step")
    batch_size: int = Field(32, ge=1)
    features: bool = Field(False, description="distillation also matches the task's feature layers")
    student_loss_weight: float = Field(0.5, ge=0, le=1, description="share of the task's own loss next to distillation (label-free tasks ignore it)")

    @field_validator("schedule")
    @classmethod
    def _increasing(cls, v):
        if not v or any(not 0 < x < 1 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("schedule must be a non-empty increasing list of shares in (0, 1), e.g. [0.25, 0.5]")
        return v


def step_ratio(done: float, target: float) -> float:
    """Share of the *current* channels to remove so that ``target`` of the original ones are gone
    when ``done`` already are: ``1 - (1 - target) / (1 - done)``."""
    return 1.0 - (1.0 - target) / (1.0 - done)


def has_labels(task) -> bool:
    """Whether ``task`` has a supervised loss of its own (else it is distillation-only)."""
    from sparsekit.tasks.base import Task

    return type(task).task_loss is not Task.task_loss


def _primary(task, result) -> float:
    return float(result.metrics[task.primary])


def iterative_prune(loaded, task, config: LoopConfig, work_dir: str | Path, resume: bool = False, say: Callable[[str], None] = lambda m: None, progress: Callable[[dict], None] = lambda info: None):
    """Run the loop on ``loaded`` (dense) for ``task``; returns ``(accepted LoadedModel, report dict)``.

    The teacher is a frozen copy of the model as given. The report lists each step: target share,
    parameters, FLOPs, metrics and drop, fine-tuning seconds, and which step was accepted.

    Raises:
        SparsekitError: the first step already drops more than ``max_drop`` (nothing accepted: the
            report is still written to ``loop.json``).
        TrainingStateError: ``resume`` with a work folder of other settings.
    """
    from sparsekit.models.checkpoint import load_checkpoint, save_checkpoint
    from sparsekit.prune.channels import prune_channels_
    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    fingerprint = json.dumps({"config": json.loads(config.canonical_json()), "task": task.name, "model": loaded.source}, sort_keys=True, default=str)
    teacher = copy.deepcopy(loaded.model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    reference = task.evaluate(teacher)
    base = _primary(task, reference)
    state_file = work / STATE
    report = {"task": task.name, "metric": task.primary, "unpruned": reference.metrics, "max_drop": config.max_drop, "steps": [], "accepted": 0, "stopped": None, "fingerprint": fingerprint}
    if resume and state_file.is_file():
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise TrainingStateError(f"'{state_file}' belongs to another model or other loop settings", "resume with the same settings, or delete the folder to start over")
        report = saved
        if report["steps"]:
            last = report["steps"][-1]
            loaded = load_checkpoint(work / last["checkpoint"])
            say(f"resumed after step {len(report['steps'])} (share {last['target']})")
    distill = DistillConfig(features=config.features, student_loss_weight=config.student_loss_weight if has_labels(task) else 0.0)
    settings = config.channels
    while report["stopped"] is None and len(report["steps"]) < len(config.schedule):
        index = len(report["steps"])
        target = config.schedule[index]
        done = config.schedule[index - 1] if index else 0.0
        start = time.perf_counter()
        share = step_ratio(done, target)
        scale = None if settings.head_share is None else settings.head_share / config.schedule[-1]  # heads reach head_share at the last step
        head_share = None if scale is None else step_ratio(done * scale, target * scale)
        say(f"step {index + 1}/{len(config.schedule)}: prune to {target:.0%} of channels removed")
        gradients = taylor_gradients(task, config.batch_size) if settings.importance == "taylor" else None
        pruned = prune_channels_(loaded, share, settings.importance, settings.round_to, exclude=settings.exclude, global_ranking=settings.global_ranking, head_ratio=head_share, gradients=gradients)
        one_shot = task.evaluate(loaded.model, reference)
        loaded.model, tuned = finetune_on_task_(loaded.model, task, config.finetune, config.batch_size, teacher, distill, work / f"step{index + 1}.state.pt", progress)
        after = task.evaluate(loaded.model, reference)
        drop = base - _primary(task, after)
        name = f"step{index + 1}.pt"
        save_checkpoint(loaded, work / name, {"prune": {"loop_step": index + 1, "target": target, "channels": pruned.to_dict()}})
        (work / f"step{index + 1}.state.pt").unlink(missing_ok=True)
        report["steps"].append({
            "step": index + 1, "target": target, "params": pruned.params[1], "flops": pruned.flops[1], "params_unpruned": report["steps"][0]["params_unpruned"] if report["steps"] else pruned.params[0],
            "flops_unpruned": report["steps"][0]["flops_unpruned"] if report["steps"] else pruned.flops[0],
            "one_shot": one_shot.metrics, "metrics": after.metrics, "drop": round(drop, 4), "within": drop <= config.max_drop,
            "finetune_seconds": round(tuned.seconds, 1), "seconds": round(time.perf_counter() - start, 1), "checkpoint": name, "heads": pruned.heads,
        })
        if drop <= config.max_drop:
            report["accepted"] = index + 1
        else:
            report["stopped"] = f"step {index + 1} dropped {drop:.2f} points (> {config.max_drop})"
        write_json_atomic(state_file, report)
    if report["accepted"] == 0:
        raise SparsekitError(f"the first pruning step already costs more than {config.max_drop} points of {task.primary} ({report['steps'][0]['drop']:.2f}); see {state_file}", "use a smaller first share in the schedule, more fine-tuning epochs, or a larger max_drop")
    accepted = load_checkpoint(work / report["steps"][report["accepted"] - 1]["checkpoint"])
    return accepted, report


def taylor_gradients(task, batch_size: int, batches: int = 8):
    """``gradients(model)``: backward passes of the task loss on a few training batches."""

    def run(model):
        model.train()
        for batch in task.train_batches(batch_size)(0)[:batches]:
            loss = task.task_loss(model, batch)
            if loss is None:
                raise SparsekitError(f"importance 'taylor' needs labels, and task '{task.name}' has none", "use --importance l1")
            loss.backward()
        model.eval()

    return run
