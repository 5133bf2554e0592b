"""A user model given to sparsekit as tests/data/user_model.py:build."""

import torch
from torch import nn


class Tower(nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(16, 64, 3, padding=1)
        self.act = nn.ReLU()
        self.proj = nn.Linear(64, width)
        self.out = nn.Linear(width, 8)

    def forward(self, x):
        y = self.act(self.conv(x)).mean(dim=(2, 3))
        return self.out(self.act(self.proj(y)))


def build(width: int = 128):
    """Returns the model and its input shapes."""
    return Tower(int(width)), [(2, 16, 12, 12)]


def build_without_shapes():
    return Tower()


def broken():
    raise RuntimeError("weights not found")


def not_a_model():
    return 42


def calib_batches():
    return [(torch.randn(4, 16, 12, 12),) for _ in range(3)]
