"""Fine-tune a model on a known task: task loss and/or distillation from the dense teacher,
masks enforced, resumable. The glue between :mod:`sparsekit.tasks` and :func:`finetune_`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from torch import nn

from sparsekit.errors import TrainingDataError
from sparsekit.recover.config import FinetuneConfig, TrainingConfig
from sparsekit.recover.finetune import FineTuneReport, TrainingState, finetune_, run_fingerprint
from sparsekit.recover.reconstruct import reconstruct_blocks_
from sparsekit.tasks.base import EvalResult, Task, check_batch_fits
from sparsekit.quantize.ptq import quantize_
from sparsekit.recover.distill import distill_loss, distillation_model, export_student
from sparsekit.sparsify.check import check_model


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings (see :func:`sparsekit.recover.distill.distillation_model`).

    Attributes:
        features: also match the outputs of the task's feature layers (e.g. encoder layers).
        feature_weight: share of the KD loss given to the feature losses (0..1).
        temperature: logit-KD temperature.
        student_loss_weight: share of the task's own loss (0: pure distillation).
    """

    features: bool = False
    feature_weight: float = 0.5
    temperature: float = 1.0
    student_loss_weight: float = 0.0


def finetune_on_task_(
    model: nn.Module,
    task: Task,
    config: TrainingConfig,
    batch_size: int = 32,
    teacher: nn.Module | None = None,
    distill: DistillConfig = DistillConfig(),
    state_path: str | os.PathLike | None = None,
    progress: Callable[[dict], None] = lambda info: None,
    evaluate_each_epoch: bool = False,
    reference: EvalResult | None = None,
) -> tuple[nn.Module, FineTuneReport]:
    """Fine-tune ``model`` on ``task``, distilling from ``teacher`` when one is given.

    Args:
        model: the (sparsified, possibly quantized) student.
        task: the task giving batches, loss and feature layers.
        config: optimizer/schedule settings.
        batch_size: training batch size.
        teacher: the dense model; required for tasks without labels.
        distill: distillation settings (used with a teacher).
        state_path: resumable training-state file (None: no saving or resuming).
        progress: per-step callback (see :func:`finetune_`).
        evaluate_each_epoch: evaluate the student on the task's held-out data after every epoch
            (``report.epoch_metrics``; shown by ``progress``).
        reference: the dense model's evaluation, for fidelity/agreement in those metrics.

    Returns:
        ``(model, report)``: the trained student (unwrapped from distillation) and what happened.

    Raises:
        TrainingDataError: no batches, a batch that does not fit, or a label-free task without
            a teacher.
    """
    epoch_batches = task.train_batches(batch_size, seed=config.seed)
    first = epoch_batches(0)

    def batches(epoch: int):  # epoch 0 is built once (tokenising a text task is not free)
        return first if epoch == 0 else epoch_batches(epoch)

    if not first:
        raise TrainingDataError(f"task '{task.name}' has no training batch", "check the task's data")
    check_batch_fits(model, first[0], task)
    if teacher is None and task.task_loss(model, first[0]) is None:
        raise TrainingDataError(f"task '{task.name}' has no labels to train on", "give the dense model as teacher (--teacher) to distil from it")
    fingerprint = run_fingerprint(model, config, f"{task.name}|{batch_size}|{teacher is not None}|{distill}")
    student = model
    teacher_grads = [(p, p.requires_grad) for p in teacher.parameters()] if teacher is not None else []  # ModelOpt freezes the teacher in place
    if teacher is not None:
        features = task.feature_layers(model) if distill.features else []
        model = distillation_model(model, teacher, task.distill_output, features, distill.feature_weight, distill.temperature, distill.student_loss_weight)

        def loss_fn(m, batch):
            if distill.student_loss_weight:  # the task loss runs the (student + teacher) forward
                return distill_loss(m, task.task_loss(m, batch))
            m(*batch[0])
            return distill_loss(m)
    else:
        def loss_fn(m, batch):
            return task.task_loss(m, batch)

    def evaluate(m):
        if teacher is None:
            return task.evaluate(m, reference).metrics
        with m.only_student_forward():  # the distillation wrapper runs the teacher too otherwise
            return task.evaluate(m, reference).metrics

    state = TrainingState(state_path, fingerprint) if state_path else None
    try:
        report = finetune_(model, batches, loss_fn, config, state, progress, evaluate if evaluate_each_epoch else None)
    finally:
        if teacher is not None:
            student = export_student(model)
        for param, flag in teacher_grads:  # the caller's model is left as it was given
            param.requires_grad_(flag)
    return student.eval(), report


@dataclass
class FinetuneResult:
    """What the finetune stage did.

    Attributes:
        report: the training run (:class:`~sparsekit.recover.finetune.FineTuneReport`).
        before: the task's metrics of the model as loaded (quantized first when ``quantize``).
        after: its metrics after training.
        reference: the teacher's (dense model's) metrics, when there was a teacher.
        masks_2to4: every masked layer still holds 2:4 (checked after training).
        reconstruction: the block reconstruction before training
            (:meth:`~sparsekit.recover.reconstruct.ReconstructionReport.to_dict`), when it ran.
    """

    report: FineTuneReport
    before: dict
    after: dict
    reference: dict | None
    masks_2to4: bool
    reconstruction: dict | None = None


def finetune_stage_(loaded, task: Task, config: FinetuneConfig, teacher: nn.Module | None = None, state_path: str | os.PathLike | None = None,
                    progress: Callable[[dict], None] = lambda info: None, say: Callable[[str], None] = lambda m: None) -> FinetuneResult:
    """The finetune stage of ``sparsekit finetune`` and of a recipe, on ``loaded`` in place:
    evaluate, reconstruct block by block when ``config.reconstruct_steps`` (from ``teacher``),
    quantize when ``config.quantize`` (then the training is QAT), train with the 2:4 masks kept
    (distilled from ``teacher`` when given), evaluate again and check the masks.

    Raises:
        SparsekitError: bad data, a diverged run, reconstruction without a teacher or blocks, or a
            quantizer ModelOpt rejects.
    """
    if config.reconstruct_steps and teacher is None:
        raise TrainingDataError("block reconstruction needs the dense model as teacher", "give --teacher, or leave --reconstruct-steps at 0")
    blocks = task.feature_layers(loaded.model) if config.reconstruct_steps else []
    if config.reconstruct_steps and not blocks:
        raise TrainingDataError(f"task '{task.name}' names no blocks of this model to reconstruct", "leave --reconstruct-steps at 0 for this model")
    reference = task.evaluate(teacher) if teacher is not None else None
    before = task.evaluate(loaded.model, reference)
    reconstruction = None
    if config.reconstruct_steps:
        say(f"block reconstruction: {len(blocks)} blocks, {config.reconstruct_steps} steps each")
        reconstruction = reconstruct_blocks_(loaded.model, teacher, blocks, task.calibration(config.reconstruct_samples), config.reconstruct_steps, config.reconstruct_lr).to_dict()
    if config.quantize:
        say(f"{config.quantize} calibration ({config.calib_method})")
        loaded.model = quantize_(loaded.model, task.calibration(config.calib_samples), config.quantize, config.no_quant, config.calib_method)
    distill = DistillConfig(features=config.features, temperature=config.temperature, student_loss_weight=config.student_loss_weight)
    loaded.model, report = finetune_on_task_(loaded.model, task, config.training(), config.batch_size, teacher, distill, state_path, progress, config.eval_each_epoch, reference)
    after = task.evaluate(loaded.model, reference)
    return FinetuneResult(report, before.metrics, after.metrics, reference.metrics if reference else None, check_model(loaded.model).passed, reconstruction)
