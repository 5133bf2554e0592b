"""Sparsity-aware fine-tuning: train a 2:4 model with its masks fixed, resumably.

The loop is deliberately small: the caller supplies the batches and a ``loss_fn(model, batch)``;
the loop owns the optimizer, the learning-rate schedule, gradient clipping, mask enforcement
(:class:`~sparsekit.recover.masks.MaskGuard`), NaN detection and resumable training states.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from sparsekit._io import atomic_path
from sparsekit.recover.config import TrainingConfig
from sparsekit.errors import SparsekitError, TrainingDataError, TrainingDivergedError, TrainingStateError
from sparsekit.recover.masks import LearnedMasks, MaskGuard, masked_parameters
from sparsekit._safe_load import load_torch_data

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]
"""``loss_fn(model, batch) -> scalar loss tensor`` (the model is in train mode)."""


@dataclass
class FineTuneReport:
    """What a fine-tuning run did.

    Attributes:
        steps: optimizer steps taken in total (including resumed ones).
        epochs: completed epochs.
        epoch_loss: mean training loss of each completed epoch.
        epoch_metrics: what ``evaluate`` returned after each completed epoch (empty without it).
        seconds: wall time of this call.
        resumed_from_step: the step a resumed run started at (0 for a fresh run).
        masked_layers: layers whose 2:4 mask was enforced (fixed) or learned.
        mask_flips: with learned masks, mask entries that changed between consecutive updates
            (0 with fixed masks).
        masks_frozen_at: with learned masks and ``mask_update_until`` below 1, the step after
            which the masks stayed fixed.
    """

    steps: int = 0
    epochs: int = 0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_metrics: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_step: int = 0
    masked_layers: int = 0
    masks_frozen_at: int | None = None
    mask_flips: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 2), "epoch_loss": [round(x, 6) for x in self.epoch_loss]}


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The optimizer over ``model``'s trainable parameters (frozen teachers are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _schedule(step: int, total: int, config: TrainingConfig) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear warm-up, cosine decay."""
    warm = int(total * config.warmup)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class TrainingState:
    """A resumable training state file: model and optimizer state, step, losses, and a
    fingerprint of the run (model structure + settings) checked on resume.

    Args:
        path: the ``.pt`` file (written atomically).
        fingerprint: identifies the run; a state with another fingerprint is refused.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, report: "FineTuneReport", running: list[float]) -> None:
        payload = {"fingerprint": self.fingerprint, "step": step, "epoch_loss": report.epoch_loss, "epoch_metrics": report.epoch_metrics, "running": running, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)

    def load(self, total_steps: int | None = None, steps_per_epoch: int | None = None) -> dict | None:
        """The saved payload, checked, or None when there is no state file yet.

        The file is read as data only (tensors and plain values, see
        :func:`sparsekit._safe_load.load_torch_data`); nothing in it is executed. Every part is
        checked for its type; with ``total_steps`` and ``steps_per_epoch`` (those of the run that
        resumes), also the step (in ``[0, total_steps]``) and the loss lists against it: the
        finished epochs' losses and the current epoch's step losses add up to the step.

        Raises:
            TrainingStateError: unreadable file, a state of another model or settings, or a part
                that is missing, of the wrong type, or does not fit this run (one line).
            UnsafeCheckpointError: the file's pickle would import or call code.
        """
        if not self.path.is_file():
            return None
        try:
            payload = load_torch_data(self.path, "training state")
        except SparsekitError:
            raise
        except Exception as exc:
            raise TrainingStateError(f"training state '{self.path}' is unreadable ({type(exc).__name__})", "delete it to start over") from exc
        if not isinstance(payload, dict) or payload.get("fingerprint") != self.fingerprint:
            raise TrainingStateError(f"training state '{self.path}' belongs to another model or other settings", "resume with the same model and settings, or delete the state to start over")
        self._check(payload, total_steps, steps_per_epoch)
        return payload

    def _damaged(self, what: str) -> TrainingStateError:
        return TrainingStateError(f"training state '{self.path}' is damaged: {what}", "delete it (or run without --resume) to start over")

    def _check(self, payload: dict, total_steps: int | None, steps_per_epoch: int | None) -> None:
        """Types of every part; with the run's step counts, the step and list lengths too."""
        parts = {"step": _is_int, "model": lambda v: isinstance(v, dict), "optimizer": lambda v: isinstance(v, dict), "epoch_loss": lambda v: isinstance(v, list), "running": lambda v: isinstance(v, list)}
        broken = next((key for key, ok in parts.items() if not ok(payload.get(key))), None)
        if broken is not None:
            raise self._damaged(f"its '{broken}' part is missing or of the wrong type")
        metrics = payload.setdefault("epoch_metrics", [])
        if not isinstance(metrics, list):
            raise self._damaged("its 'epoch_metrics' part is not a list")
        step, losses, running = payload["step"], payload["epoch_loss"], payload["running"]
        if total_steps is not None and not 0 <= step <= total_steps:
            raise self._damaged(f"its step {step} is outside this run's 0..{total_steps}")
        if step < 0:
            raise self._damaged(f"its step {step} is negative")
        if steps_per_epoch is not None:
            epochs = -(-step // steps_per_epoch)
            if len(losses) > epochs or len(running) > steps_per_epoch or len(metrics) > len(losses) or len(losses) * steps_per_epoch + len(running) != step:
                raise self._damaged(f"its {len(losses)} epoch loss(es), {len(metrics)} epoch evaluation(s) and {len(running)} step loss(es) do not add up to its step {step} at {steps_per_epoch} steps per epoch")
        if not all(_is_real(x) for x in losses) or not all(_is_real(x) for x in running):
            raise self._damaged("its losses are not all numbers")
        if not all(isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in m.items()) for m in metrics):
            raise self._damaged("its epoch evaluations are not all {metric: number}")

    def restore(self, payload: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Load a checked payload (see :meth:`load`) into ``model`` and ``optimizer``.

        The weights must have exactly the model's names and shapes, and the optimizer state must
        have the optimizer's parameter groups (same hyperparameters but the learning rate, same
        parameter count) and per-parameter tensors of each parameter's shape; nothing is loaded
        otherwise.

        Raises:
            TrainingStateError: the weights or the optimizer state do not fit (one line).
        """
        _check_weights(self, payload["model"], model)
        _check_optimizer(self, payload["optimizer"], optimizer)
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise self._damaged(f"it does not load into this model and optimizer ({first})") from exc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_weights(state: TrainingState, weights: dict, model: nn.Module) -> None:
    """The saved weights have the model's names, tensors of its shapes, nothing else."""
    own = model.state_dict()
    if set(weights) != set(own):
        odd = next(iter(sorted(map(str, set(weights) ^ set(own)))))
        raise state._damaged(f"its weights do not match the model's (e.g. '{odd}' is only in {'the state' if odd in weights else 'the model'})")
    bad = next((k for k, v in weights.items() if not isinstance(v, torch.Tensor) or v.shape != own[k].shape), None)
    if bad is not None:
        raise state._damaged(f"its weight '{bad}' is not a tensor of the model's shape {tuple(own[bad].shape)}")


def _check_optimizer(state: TrainingState, saved: dict, optimizer: torch.optim.Optimizer) -> None:
    """The saved optimizer state has this optimizer's parameter groups and per-parameter tensors."""
    groups, per_param = saved.get("param_groups"), saved.get("state")
    own = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or not isinstance(per_param, dict) or len(groups) != len(own):
        raise state._damaged(f"its optimizer state does not have this optimizer's {len(own)} parameter group(s)")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, (group, mine) in enumerate(zip(groups, own)):
        if not isinstance(group, dict) or not set(group) <= set(mine) or not isinstance(group.get("params"), list) or group["params"] != mine["params"]:
            raise state._damaged(f"its optimizer parameter group {i} has other parameters or settings than this optimizer's")
        changed = next((k for k in group if k not in ("params", "lr") and group[k] != mine[k]), None)
        if changed is not None or not _is_real(group.get("lr")) or not 0 <= group["lr"] < float("inf"):
            raise state._damaged(f"its optimizer parameter group {i} has another '{changed or 'lr'}' than this run's")
    for index, values in per_param.items():
        if not _is_int(index) or not 0 <= index < len(params) or not isinstance(values, dict):
            raise state._damaged(f"its optimizer state names parameter {index!r}, and the optimizer has {len(params)}")
        for key, value in values.items():
            if key == "step":
                if not (_is_real(value) or isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()):
                    raise state._damaged(f"its optimizer's step count of parameter {index} is not a number")
            elif not (isinstance(value, torch.Tensor) and value.shape == params[index].shape):
                raise state._damaged(f"its optimizer's '{key}' of parameter {index} does not have the parameter's shape {tuple(params[index].shape)}")


def run_fingerprint(model: nn.Module, config: TrainingConfig, extra: str = "") -> str:
    """A digest of the model's parameter names/shapes, the settings and ``extra``."""
    import hashlib

    h = hashlib.sha256(config.canonical_json().encode() + extra.encode())
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
    return h.hexdigest()[:16]


def finetune_(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: LossFn,
    config: TrainingConfig = TrainingConfig(),
    state: TrainingState | None = None,
    progress: Callable[[dict], None] = lambda info: None,
    evaluate: Callable[[nn.Module], dict] | None = None,
) -> FineTuneReport:
    """Train ``model`` in place with every 2:4 mask kept in force.

    Args:
        model: a sparsified (and possibly quantized, for QAT, or distillation-wrapped) model.
        batches: ``batches(epoch)`` returns that epoch's batches (called once per epoch); the
            same epoch must give the same batches for resuming to be exact.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        config: optimizer and schedule settings.
        state: where to save resumable states; an existing compatible state is resumed.
        progress: called after each step with ``{"epoch", "step", "steps", "loss"}``, plus
            ``"metrics"`` (the last epoch's evaluation) once there is one.
        evaluate: ``evaluate(model) -> {metric: value}``, called after each epoch (the model is
            put back in training mode afterwards); the results go to ``report.epoch_metrics``.

    Returns:
        A :class:`FineTuneReport`.

    Raises:
        TrainingDataError: an epoch yields no batch.
        TrainingDivergedError: the loss became NaN/inf; the model is rolled back to the last
            saved state (or its weights at the start) and the state file is left as it was.
        TrainingStateError: the state file belongs to another run, or is damaged (a part of the
            wrong type, a step outside ``[0, total steps]``, loss lists that do not add up to it,
            weights or optimizer state that do not fit the model and optimizer).
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    first_epoch = list(batches(0))  # built once: used for the step count and for epoch 0
    steps_per_epoch = len(first_epoch)
    if steps_per_epoch == 0:
        raise TrainingDataError("the training data yields no batch", "give at least one training sample (check the data path and batch size)")
    total = steps_per_epoch * config.epochs
    optimizer = make_optimizer(model, config)
    report = FineTuneReport(masked_layers=sum(1 for _ in masked_parameters(model)))
    running: list[float] = []
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    resumed = state.load(total, steps_per_epoch) if state else None
    if resumed:
        state.restore(resumed, model, optimizer)
        report.steps = report.resumed_from_step = resumed["step"]
        report.epoch_loss, running = list(resumed["epoch_loss"]), list(resumed["running"])
        report.epoch_metrics = list(resumed["epoch_metrics"])
        snapshot = None
        log.info("resumed at step %d of %d from %s", report.steps, total, state.path)
    model.train()
    slimmed = [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and m.weight.requires_grad] if config.bn_l1 else []
    freeze_at = max(1, round(config.mask_update_until * total)) if config.mask_update_until < 1 else None
    guard = LearnedMasks(model, optimizer, config.mask_decay, freeze_at, report.steps) if config.masks == "learned" else MaskGuard(model, optimizer, keep_zeros=config.keep_zeros)
    with guard:
        for epoch in range(report.steps // steps_per_epoch, config.epochs):
            for i, batch in enumerate(first_epoch if epoch == 0 else batches(epoch)):
                if epoch * steps_per_epoch + i < report.steps:
                    continue  # done before the resume
                loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    _roll_back(model, state, snapshot, total, steps_per_epoch)
                    kept = f"the last good state is kept at '{state.path}'" if state and state.path.is_file() else "the model was reset to its weights before training"
                    raise TrainingDivergedError(f"the training loss became {loss.item()} at epoch {epoch + 1}, step {report.steps + 1}; {kept}", "lower --lr (or raise --warmup) and resume")
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * _schedule(report.steps, total, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for gamma in slimmed:  # subgradient of bn_l1 * |gamma| (network slimming)
                    if gamma.grad is not None:
                        gamma.grad.add_(torch.sign(gamma.detach()), alpha=config.bn_l1)
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], config.grad_clip)
                optimizer.step()
                report.steps += 1
                running.append(float(loss.detach()))
                info = {"epoch": epoch + 1, "step": report.steps, "steps": total, "loss": running[-1]}
                progress({**info, "metrics": report.epoch_metrics[-1]} if report.epoch_metrics else info)
                if state and config.save_every and report.steps % config.save_every == 0:
                    guard.settle()
                    state.save(model, optimizer, report.steps, report, running)
            report.epoch_loss.append(sum(running) / max(len(running), 1))
            running = []
            report.epochs = epoch + 1
            if evaluate is not None:
                report.epoch_metrics.append(dict(evaluate(model)))
                model.train()
            guard.settle()
            if state:
                state.save(model, optimizer, report.steps, report, running)
    model.eval()
    report.mask_flips = getattr(guard, "flips", 0)
    report.masks_frozen_at = getattr(guard, "frozen_at", None)
    report.epochs = len(report.epoch_loss)
    report.seconds = time.perf_counter() - start
    return report


def _roll_back(model: nn.Module, state: TrainingState | None, snapshot: dict | None, total: int, steps_per_epoch: int) -> None:
    saved = state.load(total, steps_per_epoch) if state else None
    model.load_state_dict(saved["model"] if saved else snapshot)
    model.eval()
