"""Block-wise reconstruction: each block of a 2:4 student moves toward the dense teacher's block
output from the student's own input, the masks stay 2:4 and nothing else changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsekit.errors import TrainingDataError
from sparsekit.recover.reconstruct import reconstruct_blocks_
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x, scale=None):
        y = x + self.fc2(torch.relu(self.fc1(x)))
        return (y * scale if scale is not None else y,)  # a tuple, as transformer layers return


class Stack(nn.Module):
    def __init__(self, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, 8)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x, scale=torch.ones(()))[0]  # a keyword input, replayed as given
        return self.head(x)


BLOCKS = ["layers.0", "layers.1", "layers.2"]


def _pair():
    torch.manual_seed(0)
    teacher = Stack().eval()
    student, _ = sparsify_(copy.deepcopy(teacher), "magnitude", exclude=["head"])
    batches = [(torch.randn(16, 32, generator=torch.Generator().manual_seed(i)),) for i in range(4)]
    return teacher, student, batches


def _output_error(student, teacher, x) -> float:
    with torch.no_grad():
        return float((student(x) - teacher(x)).pow(2).sum() / teacher(x).pow(2).sum())


def test_reconstruction_lowers_every_blocks_error_and_keeps_2to4():
    teacher, student, batches = _pair()
    teacher_state = copy.deepcopy(teacher.state_dict())
    held_out = torch.randn(64, 32, generator=torch.Generator().manual_seed(99))
    before = _output_error(student, teacher, held_out)
    report = reconstruct_blocks_(student, teacher, BLOCKS, batches, steps=60, lr=3e-3)
    assert [b.name for b in report.blocks] == BLOCKS
    for b in report.blocks:
        assert b.steps == 60
        assert b.error_after < 0.7 * b.error_before, b
    assert _output_error(student, teacher, held_out) < 0.7 * before, "the model output moves toward the teacher's on unseen inputs"
    assert check_model(student).passed, "the 2:4 masks hold after training"
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items()), "the teacher is not changed"
    assert report.to_dict()["steps"] == 180


def test_reconstruction_trains_only_the_blocks_and_restores_grad_flags():
    teacher, student, batches = _pair()
    student.layers[2].fc1.bias.requires_grad_(False)  # the caller's choice, given back as it was
    head = copy.deepcopy(student.head.state_dict())
    flags = {n: p.requires_grad for n, p in student.named_parameters()}
    reconstruct_blocks_(student, teacher, BLOCKS[:2], batches, steps=5, lr=1e-3)
    assert all(torch.equal(v, student.head.state_dict()[k]) for k, v in head.items()), "a layer outside the blocks does not move"
    assert {n: p.requires_grad for n, p in student.named_parameters()} == flags


def test_bad_inputs_are_one_line_errors():
    teacher, student, batches = _pair()
    with pytest.raises(TrainingDataError, match="no blocks"):
        reconstruct_blocks_(student, teacher, [], batches)
    with pytest.raises(TrainingDataError, match="no calibration batches"):
        reconstruct_blocks_(student, teacher, BLOCKS, [])
    with pytest.raises(TrainingDataError, match="'layers.7' is not a module"):
        reconstruct_blocks_(student, teacher, ["layers.0", "layers.7"], batches)


def test_a_block_whose_shape_changed_is_one_line():
    teacher, student, batches = _pair()
    class Narrow(Block):  # as if channels had been pruned: 16 of 32 features out
        def forward(self, x, scale=None):
            return (super().forward(x)[0][:, :16],)

    class Widen(Block):
        def forward(self, x, scale=None):
            return super().forward(torch.cat([x, x], 1))

    student.layers[1], student.layers[2] = Narrow(32), Widen(32)
    with pytest.raises(TrainingDataError, match=r"block 'layers.1' gives \[16, 16\] in the 2:4 model and \[16, 32\]"):
        reconstruct_blocks_(student, teacher, BLOCKS, batches, steps=1)
