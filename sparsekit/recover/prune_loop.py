"""The iterative loop: prune -> fine-tune (distilled from the unpruned model) -> prune again.

Each step removes channels until a cumulative share of the *original* widths is gone (the
``schedule``, e.g. ``[0.125, 0.25, 0.375, 0.5]``), then fine-tunes on the task with the unpruned
model as teacher, then evaluates. The loop stops at the first step whose primary metric falls more
than ``max_drop`` points below the unpruned model's; the result is the last step within budget.
Every finished step is saved (``step<N>.pt`` and ``loop.json`` in the work folder), so an
interrupted loop resumes after its last finished step.

``loop.json`` is data, checked in full before a resume uses any of it (:func:`read_loop_state`):
its types, its step list against the schedule, and each step's checkpoint, which must be a file
inside the work folder (no absolute path, no ``..``, no symlink out of it) whose SHA-256 is the one
recorded when the step was written.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from pathlib import Path
from typing import Callable

from pydantic import Field, field_validator

from sparsekit._hashing import file_sha256
from sparsekit._io import make_folders, write_json_atomic
from sparsekit.config import StrictConfig
from sparsekit.errors import SparsekitError, TrainingStateError
from sparsekit.prune.config import PruneConfig
from sparsekit.recover.config import TrainingConfig
from sparsekit.models.checkpoint import load_checkpoint, save_checkpoint
from sparsekit.prune.apply import prune_
from sparsekit.prune.channels import prune_channels_, taylor_gradients
from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
from sparsekit.tasks.base import Task

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
    finetune: TrainingConfig = Field(default_factory=lambda: TrainingConfig(epochs=2, lr=1e-3), description="fine-tuning after each step")
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
        TrainingStateError: ``resume`` with a work folder of other settings, a ``loop.json`` that
            is damaged or does not fit the schedule, or a step checkpoint that is missing, outside
            the work folder, or changed since its step wrote it.
    """
    work = make_folders(work_dir)
    fingerprint = json.dumps({"config": json.loads(config.canonical_json()), "task": task.name, "model": loaded.source}, sort_keys=True, default=str)
    state_file = work / STATE
    saved = read_loop_state(state_file, config, fingerprint, task) if resume and state_file.is_file() else None  # before any work
    teacher = copy.deepcopy(loaded.model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    reference = task.evaluate(teacher)
    base = _primary(task, reference)
    report = {"task": task.name, "metric": task.primary, "unpruned": reference.metrics, "max_drop": config.max_drop, "steps": [], "accepted": 0, "stopped": None, "fingerprint": fingerprint}
    if saved is not None:
        report = saved
        if report["steps"]:
            last = report["steps"][-1]
            loaded = load_checkpoint(step_checkpoint(work, last))
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
        digest = file_sha256(work / name)
        (work / f"step{index + 1}.state.pt").unlink(missing_ok=True)
        report["steps"].append({
            "step": index + 1, "target": target, "params": pruned.params[1], "flops": pruned.flops[1], "params_unpruned": report["steps"][0]["params_unpruned"] if report["steps"] else pruned.params[0],
            "flops_unpruned": report["steps"][0]["flops_unpruned"] if report["steps"] else pruned.flops[0],
            "one_shot": one_shot.metrics, "metrics": after.metrics, "drop": round(drop, 4), "within": drop <= config.max_drop,
            "finetune_seconds": round(tuned.seconds, 1), "seconds": round(time.perf_counter() - start, 1), "checkpoint": name, "sha256": digest, "heads": pruned.heads,
        })
        if drop <= config.max_drop:
            report["accepted"] = index + 1
        else:
            report["stopped"] = f"step {index + 1} dropped {drop:.2f} points (> {config.max_drop})"
        write_json_atomic(state_file, report)
    if report["accepted"] == 0:
        raise SparsekitError(f"the first pruning step already costs more than {config.max_drop} points of {task.primary} ({report['steps'][0]['drop']:.2f}); see {state_file}", "use a smaller first share in the schedule, more fine-tuning epochs, or a larger max_drop")
    accepted = load_checkpoint(step_checkpoint(work, report["steps"][report["accepted"] - 1]))
    return accepted, report


_RESTART = "delete the work folder, or run without --resume, to start the loop over"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_BYTES_PER_STEP = 1 << 20
"""The most bytes of ``loop.json`` per schedule step (a step entry is a few KiB: metrics, heads)."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_metrics(value, metric: str) -> bool:
    """A ``{name: number}`` dict that holds ``metric``."""
    return isinstance(value, dict) and metric in value and all(isinstance(k, str) and _is_number(v) for k, v in value.items())


_STEP_FIELDS = {
    "step": _is_int, "target": _is_number, "params": _is_int, "flops": _is_int, "params_unpruned": _is_int, "flops_unpruned": _is_int,
    "drop": _is_number, "within": lambda v: isinstance(v, bool), "finetune_seconds": _is_number, "seconds": _is_number,
    "checkpoint": lambda v: isinstance(v, str) and 0 < len(v) <= 255, "heads": lambda v: isinstance(v, dict),
}
"""Each field of a step entry and the check of its value (``one_shot``, ``metrics``, ``sha256``: below)."""


def _damaged(state_file: Path, what: str) -> TrainingStateError:
    return TrainingStateError(f"loop file '{state_file}' is damaged: {what}", _RESTART)


def read_loop_state(state_file: Path, config: LoopConfig, fingerprint: str, task) -> dict:
    """Read and check a work folder's ``loop.json`` before a resume uses any of it.

    Checked: the size of the file (bounded by the schedule's length), the fingerprint (model,
    task and settings), every field's type, the step list (at most one entry per schedule step,
    numbered 1, 2, ... with that step's share), ``accepted``/``stopped`` against the steps, and each
    step's checkpoint name (:func:`step_path`) and recorded SHA-256. The checkpoint files themselves
    are hashed when they are loaded (:func:`step_checkpoint`).

    Returns:
        The report dict the loop continues.

    Raises:
        TrainingStateError: anything above does not hold (one line naming the file and the field).
    """
    limit = _MAX_BYTES_PER_STEP * (len(config.schedule) + 1)
    try:
        size = state_file.stat().st_size
        if size > limit:
            raise _damaged(state_file, f"it is {size:,} bytes, more than a loop of {len(config.schedule)} step(s) writes ({limit:,} at most)")
        saved = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _damaged(state_file, f"it is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(saved, dict):
        raise _damaged(state_file, f"it holds a {type(saved).__name__}, not an object")
    if saved.get("fingerprint") != fingerprint:
        raise TrainingStateError(f"'{state_file}' belongs to another model or other loop settings", "resume with the same settings, or delete the folder to start over")
    top = {"task": lambda v: v == task.name, "metric": lambda v: v == task.primary, "unpruned": lambda v: _is_metrics(v, task.primary),
           "max_drop": _is_number, "steps": lambda v: isinstance(v, list), "accepted": _is_int, "stopped": lambda v: v is None or isinstance(v, str)}
    bad = next((key for key, ok in top.items() if not ok(saved.get(key))), None)
    if bad is not None:
        raise _damaged(state_file, f"its '{bad}' entry is missing or wrong")
    steps = saved["steps"]
    if len(steps) > len(config.schedule):
        raise _damaged(state_file, f"it lists {len(steps)} steps, and the schedule has {len(config.schedule)}")
    for i, entry in enumerate(steps):
        _check_step(state_file, entry, i, config, task.primary)
    _check_outcome(state_file, saved)
    return saved


def _check_step(state_file: Path, entry, index: int, config: LoopConfig, metric: str) -> None:
    """Check step entry ``index`` (0-based) of ``loop.json`` against the schedule; its metrics
    must hold the task's primary ``metric``."""
    where = f"step entry {index + 1}"
    if not isinstance(entry, dict):
        raise _damaged(state_file, f"{where} is a {type(entry).__name__}, not an object")
    bad = next((key for key, ok in _STEP_FIELDS.items() if not ok(entry.get(key))), None)
    if bad is None:
        bad = next((key for key in ("one_shot", "metrics") if not _is_metrics(entry.get(key), metric)), None)
    if bad is not None:
        raise _damaged(state_file, f"{where} has no valid '{bad}'")
    if entry["step"] != index + 1 or entry["target"] != config.schedule[index]:
        raise _damaged(state_file, f"{where} is step {entry['step']} at share {entry['target']}, and the schedule's step {index + 1} is share {config.schedule[index]}")
    if min(entry["params"], entry["flops"]) < 0 or min(entry["params_unpruned"], entry["flops_unpruned"]) <= 0:
        raise _damaged(state_file, f"{where} has a negative or zero parameter or FLOP count")
    if not isinstance(entry.get("sha256"), str):
        raise TrainingStateError(f"loop file '{state_file}' records no checksum for step {index + 1}'s checkpoint (written by an older sparsekit)", _RESTART)
    if not _SHA256.fullmatch(entry["sha256"]):
        raise _damaged(state_file, f"{where}'s 'sha256' is not a SHA-256 digest")
    step_path(state_file.parent, entry["checkpoint"])


def _check_outcome(state_file: Path, saved: dict) -> None:
    """``accepted`` and ``stopped`` must be what the loop leaves after these steps: every step
    within budget is accepted, and the loop stops at the first one past it."""
    steps, accepted, stopped = saved["steps"], saved["accepted"], saved["stopped"]
    within = [entry["within"] for entry in steps]
    expected = len(steps) if stopped is None else len(steps) - 1
    if accepted != expected or not all(within[:accepted]) or (stopped is not None and (not steps or within[-1])):
        raise _damaged(state_file, f"'accepted' is {accepted} and 'stopped' is {'set' if stopped else 'not set'}, which {len(steps)} step(s) of which {sum(within)} within budget cannot give")


def step_path(work: Path, name: str) -> Path:
    """The file ``name`` (a step entry's ``checkpoint``) inside the work folder ``work``.

    Raises:
        TrainingStateError: ``name`` is absolute, has a ``..`` part, or resolves (through a
            symlink) outside ``work``.
    """
    state_file = work / STATE
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\0" in name or not relative.parts:
        raise TrainingStateError(f"loop file '{state_file}' names the checkpoint '{name}', which is not a file name inside its folder", _RESTART)
    path = work / relative
    try:
        inside = path.resolve().is_relative_to(work.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise TrainingStateError(f"loop file '{state_file}' names the checkpoint '{name}', which leads outside its folder", _RESTART)
    return path


def step_checkpoint(work: Path, entry: dict) -> Path:
    """The checkpoint of a step entry of ``loop.json``, checked to be unchanged since its step.

    Raises:
        TrainingStateError: the file is missing, not a regular file, or its SHA-256 is not the one
            recorded in the entry.
    """
    path = step_path(work, entry["checkpoint"])
    state_file = work / STATE
    if not path.is_file():
        raise TrainingStateError(f"step {entry['step']}'s checkpoint '{path}' (named in '{state_file}') is missing", _RESTART)
    if file_sha256(path) != entry["sha256"]:
        raise TrainingStateError(f"step {entry['step']}'s checkpoint '{path}' changed since the step wrote it (its SHA-256 is not the one in '{state_file}')", _RESTART)
    return path


def loop_config_from(config: PruneConfig) -> LoopConfig:
    """The loop settings a :class:`~sparsekit.prune.config.PruneConfig` with a ``schedule`` describes."""
    channels = ChannelSettings(importance=config.importance, round_to=config.round_to, exclude=config.exclude, global_ranking=config.global_ranking, head_share=config.head_ratio)
    return LoopConfig(schedule=config.schedule or [config.ratio], max_drop=config.max_drop, batch_size=config.batch_size, student_loss_weight=config.student_loss_weight,
                      channels=channels, finetune=TrainingConfig(epochs=config.epochs, lr=config.lr))


def prune_stage_(loaded, config: PruneConfig, task=None, work_dir: str | Path | None = None, resume: bool = False,
                 say: Callable[[str], None] = lambda m: None, progress: Callable[[dict], None] = lambda info: None) -> tuple[object, dict]:
    """The prune stage of ``sparsekit prune`` and of a recipe: channel pruning with a task and a
    ``work_dir`` runs the prune -> fine-tune loop (:func:`iterative_prune`, one step per share of
    ``config.schedule``, else one to ``config.ratio``, saved in ``work_dir``); everything else is one
    step of :func:`sparsekit.prune.apply.prune_` (``task`` then only gives taylor gradients).

    Returns:
        ``(loaded, summary)``: the pruned model (the loop's accepted step, a new object) and
        ``{"granularity": ..., <"loop"|"channels"|"unstructured"|"low_rank">: report}``.

    Raises:
        SparsekitError: bad settings, nothing prunable, or a first step that already costs more
            than ``max_drop``.
        TrainingStateError: ``resume`` with a work folder of other settings.
    """
    if config.granularity == "channel" and task is not None and work_dir is not None:
        loaded, report = iterative_prune(loaded, task, loop_config_from(config), work_dir, resume, say=say, progress=progress)
        return loaded, {"granularity": "channel", "loop": report}
    return prune_(loaded, config, task=task)
