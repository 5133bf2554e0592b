"""Grouped and depthwise convs: one rule (TensorRT runs them dense, so they stay dense) shared by
analyze, both sparsify methods and the export check, so a U-Net or ResNeXt with groups>1 goes
through without an --exclude."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.export.export import export_
from sparsekit.models.calib import load_calibration
from sparsekit.models.source import wrap
from sparsekit.sparsify.sparsify import sparsify_



class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(16, 64, 3, padding=1)
        self.grp = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.pw = nn.Conv2d(64, 64, 1)
        self.head = nn.Linear(64, 16)

    def forward(self, x):
        y = torch.relu(self.pw(self.dw(self.grp(self.stem(x)))))
        return self.head(y.mean(dim=(2, 3)))


@pytest.fixture
def loaded():
    torch.manual_seed(0)
    return wrap(GroupedNet().eval(), [(1, 16, 8, 8)])


@pytest.mark.parametrize("method", ["magnitude", "sparsegpt"])
def test_every_stage_keeps_grouped_convs_dense_for_the_same_reason(loaded, method, tmp_path):
    layers = {a.name: a for a in analyze_model(loaded).layers}
    for name in ("grp", "dw"):
        assert not layers[name].trt["ok"] and not layers[name].magnitude["ok"] and not layers[name].sparsegpt["ok"]
        assert "grouped conv" in layers[name].magnitude["reason"] and "grouped conv" in layers[name].trt["reason"]
    calib = load_calibration(None, loaded.inputs, 8) if method == "sparsegpt" else None
    loaded.model, report = sparsify_(loaded.model, method, calib=calib)
    decisions = {d.name: d for d in report.layers}
    assert decisions["grp"].status == "skipped" and "grouped conv" in decisions["grp"].reason
    assert decisions["dw"].status == "skipped"
    assert {"stem", "pw"} <= set(report.sparsified)
    result = export_(loaded, "fp16", tmp_path / "m.onnx")  # was: "2 layer(s) lost 2:4 in the ONNX" unless --exclude '*grp'
    assert result.check.passed and set(result.sparsified) == set(report.sparsified)
    checked = {c.name: c for c in result.check.layers}
    assert not checked["grp"].sparsifiable and "grouped conv" in checked["grp"].sparsify_reason
