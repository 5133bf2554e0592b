"""Block-wise output reconstruction: repair a 2:4 model one block at a time, before (or instead of)
end-to-end distillation.

SparseGPT prunes each layer to reproduce that layer's dense output on calibration data, but
errors add up through the depth: block ``i`` of the sparse model sees the sparse model's
input, not the dense one. Reconstruction trains block ``i`` of the student, masks fixed, so
that fed the *student's* hidden state it reproduces the *dense teacher's* output of the same
block (as in block-wise fine-tuning of pruned LLMs, e.g. EBFT), then moves to block ``i + 1``
with the repaired prefix. Each step runs one block forward and backward, not the whole model
and a teacher, so it is a fraction of a distillation step's cost.

The blocks are the task's feature layers (:meth:`sparsekit.tasks.base.Task.feature_layers`:
the encoder or decoder layers of a transformer). Inputs are the task's calibration batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from sparsekit.errors import TrainingDataError, TrainingDivergedError
from sparsekit.recover.distill import first_tensor
from sparsekit.recover.masks import enforce_masks_

_CACHE_KWARGS = ("past_key_value", "past_key_values")
"""Keyword inputs of decoder layers holding a KV cache: replayed as None (a replayed block must not
append to a cache on every step)."""


class _Reached(Exception):
    """Raised by a capture hook to stop a forward pass once the block of interest has run."""


@dataclass
class BlockReconstruction:
    """One block's reconstruction.

    Attributes:
        name: the block's module path.
        steps: optimizer steps taken on it.
        error_before: relative squared error of its output to the teacher's over the calibration
            batches, ``sum ||student - teacher||^2 / sum ||teacher||^2``, before training.
        error_after: the same after training (with the block's input from the repaired prefix).
    """

    name: str
    steps: int
    error_before: float
    error_after: float


@dataclass
class ReconstructionReport:
    """What :func:`reconstruct_blocks_` did: per block, and the time it took (seconds)."""

    blocks: list[BlockReconstruction] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"blocks": [asdict(b) for b in self.blocks], "seconds": round(self.seconds, 1), "steps": sum(b.steps for b in self.blocks)}


def _detached(value):
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    if isinstance(value, list):
        return [_detached(v) for v in value]
    return value


def _block_inputs(model: nn.Module, block: nn.Module, batches: Sequence[tuple]) -> list[tuple[tuple, dict]]:
    """``(args, kwargs)`` that ``model``'s forward passes to ``block``, one per batch (the forward
    stops there)."""
    captured: list[tuple[tuple, dict]] = []

    def hook(_module, args, kwargs):
        kwargs = {k: (None if k in _CACHE_KWARGS else _detached(v)) for k, v in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        captured.append((_detached(args), kwargs))
        raise _Reached

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for inputs in batches:
                try:
                    model(*inputs)
                except _Reached:
                    pass
    finally:
        handle.remove()
    if len(captured) != len(batches):
        raise TrainingDataError("a calibration batch never reached the block being reconstructed", "reconstruct only blocks every forward runs through")
    return captured


def _block_outputs(block: nn.Module, inputs: list[tuple[tuple, dict]]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [first_tensor(block(*args, **kwargs)).detach() for args, kwargs in inputs]


def _relative_error(block: nn.Module, inputs, targets) -> float:
    with torch.no_grad():
        num = sum(float((first_tensor(block(*a, **k)).float() - t.float()).pow(2).sum()) for (a, k), t in zip(inputs, targets))
    den = sum(float(t.float().pow(2).sum()) for t in targets)
    return num / max(den, 1e-30)


def reconstruct_blocks_(
    student: nn.Module,
    teacher: nn.Module,
    blocks: Sequence[str],
    batches: Sequence[tuple],
    steps: int = 100,
    lr: float = 1e-4,
    progress: Callable[[dict], None] = lambda info: None,
) -> ReconstructionReport:
    """Train ``student``'s blocks in order, in place, each to reproduce ``teacher``'s output of the
    same block from the student's own input; 2:4 masks stay as they are.

    Args:
        student: the 2:4 model (ModelOpt masks, :func:`sparsekit.sparsify.sparsify_`).
        teacher: the dense model it was made from (same module paths); not changed.
        blocks: module paths of the blocks, input side first (e.g. ``bert.encoder.layer.0``).
        batches: model-input tuples (a task's calibration batches); every one is used each pass.
        steps: AdamW steps per block (one batch a step, cycling through ``batches``).
        lr: peak learning rate (cosine decay to 0 over each block's steps; no weight decay).
        progress: called after every step with ``{"block", "blocks", "step", "steps", "loss"}``.

    Returns:
        A :class:`ReconstructionReport` (relative output error of each block before and after).

    Raises:
        TrainingDataError: no blocks, no batches, a block the student or teacher lacks, or one whose
            output shape differs between them.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    if not blocks:
        raise TrainingDataError("the model has no blocks to reconstruct (the task names no feature layers)", "leave reconstruction off for this model")
    if not batches:
        raise TrainingDataError("no calibration batches to reconstruct the blocks on", "give calibration data (--data or --calib-samples > 0)")
    start = time.perf_counter()
    s_modules, t_modules = dict(student.named_modules()), dict(teacher.named_modules())
    missing = [b for b in blocks if b not in s_modules or b not in t_modules]
    if missing:
        raise TrainingDataError(f"block '{missing[0]}' is not a module of both the student and the teacher", "reconstruct blocks the two models share")
    was_training = student.training
    student.eval()
    teacher.eval()
    report = ReconstructionReport()
    flags = [(p, p.requires_grad) for p in student.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for index, name in enumerate(blocks):
            block = s_modules[name]
            inputs = _block_inputs(student, block, batches)
            targets = _block_outputs(t_modules[name], _block_inputs(teacher, t_modules[name], batches))
            with torch.no_grad():
                shape = tuple(first_tensor(block(*inputs[0][0], **inputs[0][1])).shape)
            if shape != tuple(targets[0].shape):
                raise TrainingDataError(f"block '{name}' gives {list(shape)} in the 2:4 model and {list(targets[0].shape)} in the teacher (pruned channels?)", "reconstruct only models whose blocks keep the teacher's shapes (2:4 without structured pruning)")
            before = _relative_error(block, inputs, targets)
            params = [p for p in block.parameters() if p.is_floating_point()]
            for p in params:
                p.requires_grad_(True)
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
            scale = [max(float(t.float().pow(2).mean()), 1e-30) for t in targets]
            for step in range(steps):
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
                k = step % len(inputs)
                args, kwargs = inputs[k]
                loss = (first_tensor(block(*args, **kwargs)).float() - targets[k].float()).pow(2).mean() / scale[k]
                if not torch.isfinite(loss.detach()):
                    raise TrainingDivergedError(f"block reconstruction of '{name}' diverged (loss {float(loss)}) at step {step + 1}", "lower the reconstruction learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                enforce_masks_(block, optimizer)
                progress({"block": index + 1, "blocks": len(blocks), "step": step + 1, "steps": steps, "loss": float(loss.detach())})
            for p in params:
                p.requires_grad_(False)
            report.blocks.append(BlockReconstruction(name, steps, round(before, 6), round(_relative_error(block, inputs, targets), 6)))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        student.train(was_training)
    report.seconds = time.perf_counter() - start
    return report
