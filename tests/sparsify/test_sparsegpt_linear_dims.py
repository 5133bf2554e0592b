"""SparseGPT on Linear layers whose input has more than three dims (ConvNeXt's pointwise layers
see ``[B, H, W, C]``): was "internal error: t_() expects a tensor with <= 2 dimensions"."""

from __future__ import annotations

import torch
from torch import nn

from sparsekit.models.calib import load_calibration
from sparsekit.models.source import wrap
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


class PointwiseBlock(nn.Module):
    """A ConvNeXt-style block: depthwise conv, then Linear layers on channels-last maps."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(32, 32, 7, padding=3, groups=32)
        self.pw1 = nn.Linear(32, 128)
        self.pw2 = nn.Linear(128, 32)

    def forward(self, x):  # [B, 32, H, W]
        y = self.dw(x).permute(0, 2, 3, 1)  # [B, H, W, 32]
        y = self.pw2(torch.nn.functional.gelu(self.pw1(y)))
        return (x + y.permute(0, 3, 1, 2)).mean(dim=(2, 3))


def test_sparsegpt_collects_statistics_for_linear_layers_on_4d_inputs():
    torch.manual_seed(0)
    loaded = wrap(PointwiseBlock().eval(), [(2, 32, 8, 8)])
    x = loaded.inputs.random(seed=3)
    with torch.no_grad():
        dense = loaded.model(*x)
    loaded.model, report = sparsify_(loaded.model, "sparsegpt", calib=load_calibration(None, loaded.inputs, 8))
    assert set(report.sparsified) == {"pw1", "pw2"}
    assert check_model(loaded.model).passed
    with torch.no_grad():
        sparse = loaded.model(*x)
    assert sparse.shape == dense.shape and torch.isfinite(sparse).all()
    for module in loaded.model.modules():  # no hook left behind
        assert not module._forward_pre_hooks and not any("restore" in getattr(h, "__name__", "") for h in module._forward_hooks.values())
