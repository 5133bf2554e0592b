"""Built-in MLP: the smallest model with eligible Linear layers."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """``x [B, in_features] -> logits [B, classes]`` through ``depth`` hidden Linear+ReLU layers."""

    def __init__(self, in_features: int = 256, hidden: int = 1024, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))
