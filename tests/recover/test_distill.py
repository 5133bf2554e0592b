"""Distillation through ModelOpt: the student moves toward the teacher and comes back plain, still 2:4."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsekit.recover.distill import distill_loss, distillation_model, export_student
from sparsekit.recover.finetune import TrainingConfig, finetune_
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.out = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 32)

    def forward(self, x):
        return self.out(torch.relu(self.l2(torch.relu(self.l1(x)))))


def _cos(a, b):
    return nn.functional.cosine_similarity(a, b, dim=-1).mean().item()


def test_distillation_raises_fidelity_and_keeps_the_masks():
    torch.manual_seed(0)
    teacher = Encoder().eval()
    student, _ = sparsify_(copy.deepcopy(teacher), "magnitude")
    x_eval = torch.randn(256, 32)
    with torch.no_grad():
        before = _cos(student(x_eval), teacher(x_eval))
    wrapped = distillation_model(student, teacher, "cosine", features=["l2"], feature_weight=0.3)
    batches = lambda epoch: [(torch.randn(32, 32, generator=torch.Generator().manual_seed(epoch * 100 + i)),) for i in range(20)]

    def loss_fn(m, batch):
        m(*batch)
        return distill_loss(m)

    report = finetune_(wrapped, batches, loss_fn, TrainingConfig(epochs=4, lr=3e-3))
    plain = export_student(wrapped)
    assert type(plain) is Encoder
    assert not any("teacher" in n for n, _ in plain.named_modules())
    with torch.no_grad():
        after = _cos(plain(x_eval), teacher(x_eval))
    assert after > before + 0.005, (before, after)
    assert report.epoch_loss[-1] < report.epoch_loss[0]
    assert check_model(plain).passed
    assert all(not p.requires_grad for p in teacher.parameters()), "the teacher is frozen"


def test_distillation_leaves_the_callers_teacher_trainable(digits_dense):
    """ModelOpt freezes the teacher in place; the kit gives the caller's model back as it was, so a
    later run that trains it (or a copy) still has parameters to optimise."""
    import copy

    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_

    task, loaded, _ = digits_dense
    teacher = copy.deepcopy(loaded.model)
    before = [p.requires_grad for p in teacher.parameters()]
    student = copy.deepcopy(loaded.model)
    finetune_on_task_(student, task, TrainingConfig(epochs=1, lr=1e-4), 256, teacher=teacher, distill=DistillConfig())
    assert [p.requires_grad for p in teacher.parameters()] == before and any(before)
