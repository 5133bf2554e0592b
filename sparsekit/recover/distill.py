"""Distillation from the dense model through ModelOpt (``modelopt.torch.distill``).

The student (the sparse, possibly quantized model) is wrapped by ``mtd.convert`` with the dense
teacher; its forward runs both, and :func:`distill_loss` combines the output loss (logit KD for
classifiers, cosine for embeddings) with optional per-layer feature losses. ``export_student``
unwraps it again, leaving the student's sparsity/quantization state as it was.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.loss import _Loss

from sparsekit._quiet import quiet_modelopt
from sparsekit._lazy import lazy_import

mtd = lazy_import("modelopt.torch.distill")

OUTPUT_LOSSES = ("logits", "cosine", "mse")


def first_tensor(x):
    """The tensor of a module output that may be a tuple/list or an HF output object (its
    ``logits``, else its ``last_hidden_state``)."""
    if isinstance(x, (tuple, list)):
        return x[0]
    for name in ("logits", "last_hidden_state"):
        if getattr(x, name, None) is not None:
            return getattr(x, name)
    return x


class LogitsDistillationLoss(_Loss):
    """ModelOpt's logit KD (KL at a temperature, over the last dimension: classes, or the
    vocabulary at every position of a causal LM) on the logits of any output form."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.inner = mtd.LogitsDistillationLoss(temperature=temperature, reduction="batchmean")

    def forward(self, student, teacher) -> torch.Tensor:
        return self.inner(first_tensor(student).float(), first_tensor(teacher).float())


class CosineDistillationLoss(_Loss):
    """``mean(1 - cos(student, teacher))`` over the last dimension (embeddings ``[B, D]``)."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(first_tensor(student).float(), first_tensor(teacher).float(), dim=-1)).mean()


class FeatureMSELoss(_Loss):
    """MSE between two intermediate outputs, normalised by the teacher's mean square (so layers
    of different scale weigh alike)."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s, t = first_tensor(student).float(), first_tensor(teacher).float()
        return F.mse_loss(s, t) / t.pow(2).mean().clamp_min(1e-8)


def _output_loss(kind: str, temperature: float) -> _Loss:
    if kind == "logits":
        return LogitsDistillationLoss(temperature)
    if kind == "cosine":
        return CosineDistillationLoss()
    if kind == "mse":
        return FeatureMSELoss()
    raise ValueError(f"unknown distillation loss '{kind}' (one of {OUTPUT_LOSSES})")


def distillation_model(
    student: nn.Module,
    teacher: nn.Module,
    output_loss: Literal["logits", "cosine", "mse"] = "logits",
    features: Sequence[str] = (),
    feature_weight: float = 0.5,
    temperature: float = 1.0,
    student_loss_weight: float = 0.0,
) -> nn.Module:
    """Wrap ``student`` for distillation from ``teacher`` (ModelOpt ``kd_loss`` mode).

    Args:
        student: the model being trained (modified: ModelOpt converts it in place).
        teacher: the dense model; frozen and kept in eval mode.
        output_loss: loss between the final outputs: ``logits`` (KL at ``temperature``),
            ``cosine`` (embeddings) or ``mse``.
        features: module names present in both models whose outputs are matched too (normalised
            MSE), e.g. the encoder layers.
        feature_weight: total weight of the feature losses (the output loss gets the rest of
            ``1 - student_loss_weight``).
        temperature: softmax temperature of the logit loss.
        student_loss_weight: weight of the task loss passed to :func:`distill_loss` (0: pure KD).

    Returns:
        The wrapped model; call :func:`distill_loss` after its forward.
    """
    teacher = teacher.eval()
    criterion: dict = {("", ""): _output_loss(output_loss, temperature)}
    kd_share = 1.0 - student_loss_weight
    if features:
        for name in features:
            criterion[(name, name)] = FeatureMSELoss()
        per_feature = kd_share * feature_weight / len(features)
        weights = [kd_share * (1 - feature_weight)] + [per_feature] * len(features)
    else:
        weights = [kd_share]
    weights = [math.floor(w * 1e9) / 1e9 for w in weights]  # ModelOpt refuses a sum above 1 by one ulp
    config = {"teacher_model": teacher, "criterion": criterion, "loss_balancer": mtd.StaticLossBalancer(weights)}
    with quiet_modelopt():
        return mtd.convert(student, mode=[("kd_loss", config)])


def distill_loss(model: nn.Module, student_loss: torch.Tensor | None = None) -> torch.Tensor:
    """The combined distillation loss of the last forward of a :func:`distillation_model`."""
    if student_loss is None:
        student_loss = torch.zeros((), device=next(model.parameters()).device)
    return model.compute_kd_loss(student_loss=student_loss)


def export_student(model: nn.Module) -> nn.Module:
    """Remove the teacher and losses; returns the plain student (sparsity/quantization kept)."""
    with quiet_modelopt():
        return mtd.export(model)
