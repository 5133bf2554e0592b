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
from typing import Any, Callable, Iterable, Literal

import torch
from pydantic import Field
from torch import nn

from sparsekit._io import atomic_path
from sparsekit.config import StrictConfig
from sparsekit.errors import SparsekitError, TrainingDataError, TrainingDivergedError, TrainingStateError
from sparsekit.recover.masks import LearnedMasks, MaskGuard, masked_parameters

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]
"""``loss_fn(model, batch) -> scalar loss tensor`` (the model is in train mode)."""


class FineTuneConfig(StrictConfig):
    """Fine-tuning settings.

    Attributes:
        epochs: passes over the training batches.
        lr: peak learning rate (linear warm-up, then cosine decay to 0).
        warmup: share of the steps spent warming up (0..0.5).
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``adamw`` or ``sgd`` (with ``momentum``).
        momentum: SGD momentum.
        grad_clip: max gradient L2 norm; 0 turns clipping off.
        seed: seed of the batch order and dropout.
        save_every: steps between training-state saves (0: at the end of each epoch only).
        bn_l1: network slimming: an L1 penalty ``bn_l1 * sum|gamma|`` on every BatchNorm scale, so that
            unimportant channels go towards zero and channel pruning by ``bn`` importance can take
            them (0: off; 1e-4 to 1e-3 is typical).
        keep_zeros: weights that are exactly zero when training starts stay zero (unstructured
            pruning); 2:4 masks are kept either way.
        masks: ``fixed`` (the 2:4 masks of sparsify stay) or ``learned`` (SR-STE: masks recomputed
            from the dense weights every step, frozen at the end; see
            :class:`~sparsekit.recover.masks.LearnedMasks`).
        mask_decay: SR-STE's decay of the pruned weights (``learned`` only).
    """

    epochs: int = Field(3, ge=1)
    lr: float = Field(5e-5, gt=0)
    warmup: float = Field(0.06, ge=0, le=0.5)
    weight_decay: float = Field(0.01, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    seed: int = 0
    save_every: int = Field(0, ge=0)
    bn_l1: float = Field(0.0, ge=0)
    keep_zeros: bool = False
    masks: Literal["fixed", "learned"] = "fixed"
    mask_decay: float = Field(2e-4, ge=0)


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
    """

    steps: int = 0
    epochs: int = 0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_metrics: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_step: int = 0
    masked_layers: int = 0
    mask_flips: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 2), "epoch_loss": [round(x, 6) for x in self.epoch_loss]}


def make_optimizer(model: nn.Module, config: FineTuneConfig) -> torch.optim.Optimizer:
    """The optimizer over ``model``'s trainable parameters (frozen teachers are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _schedule(step: int, total: int, config: FineTuneConfig) -> float:
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

    def load(self) -> dict | None:
        """The saved payload, or None when there is no state file yet.

        The file is read as data only (tensors and plain values, see
        :func:`sparsekit._safe_load.load_torch_data`); nothing in it is executed.

        Raises:
            TrainingStateError: unreadable file, or a state of another model or settings.
            UnsafeCheckpointError: the file's pickle would import or call code.
        """
        from sparsekit._safe_load import load_torch_data

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
        parts = {"step": int, "model": dict, "optimizer": dict, "epoch_loss": list, "running": list}
        broken = next((key for key, kind in parts.items() if not isinstance(payload.get(key), kind)), None)
        if broken is not None:
            raise TrainingStateError(f"training state '{self.path}' is damaged: its '{broken}' part is missing or of the wrong type", "delete it to start over")
        return payload


def run_fingerprint(model: nn.Module, config: FineTuneConfig, extra: str = "") -> str:
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
    config: FineTuneConfig = FineTuneConfig(),
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
        TrainingStateError: the state file belongs to another run.
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
    resumed = state.load() if state else None
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        report.steps = report.resumed_from_step = resumed["step"]
        report.epoch_loss, running = list(resumed["epoch_loss"]), list(resumed["running"])
        report.epoch_metrics = list(resumed.get("epoch_metrics", []))
        snapshot = None
        log.info("resumed at step %d of %d from %s", report.steps, total, state.path)
    model.train()
    slimmed = [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and m.weight.requires_grad] if config.bn_l1 else []
    guard = LearnedMasks(model, optimizer, config.mask_decay) if config.masks == "learned" else MaskGuard(model, optimizer, keep_zeros=config.keep_zeros)
    with guard:
        for epoch in range(report.steps // steps_per_epoch, config.epochs):
            for i, batch in enumerate(first_epoch if epoch == 0 else batches(epoch)):
                if epoch * steps_per_epoch + i < report.steps:
                    continue  # done before the resume
                loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    _roll_back(model, state, snapshot)
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
    report.epochs = len(report.epoch_loss)
    report.seconds = time.perf_counter() - start
    return report


def _roll_back(model: nn.Module, state: TrainingState | None, snapshot: dict | None) -> None:
    saved = state.load() if state else None
    model.load_state_dict(saved["model"] if saved else snapshot)
    model.eval()
