"""Every layer of a known kind is listed with a verdict: transposed convs in analyze (TensorRT has
no 2:4 deconvolution), Conv1d layers in sparsify's table (ModelOpt does not take them), never
silently missing."""

from __future__ import annotations

import torch
from torch import nn

from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.models.source import wrap
from sparsekit.sparsify.sparsify import sparsify_


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(16, 32, 3, padding=1)
        self.up = nn.ConvTranspose2d(32, 32, 2, stride=2)
        self.fc = nn.Linear(32, 32)

    def forward(self, x):  # [B, 16, 64]
        y = self.conv1d(x).reshape(x.shape[0], 32, 8, 8)
        return self.fc(self.up(y).mean(dim=(2, 3)))


def test_every_known_layer_has_a_verdict_in_analyze_and_sparsify():
    torch.manual_seed(0)
    loaded = wrap(Mixed().eval(), [(1, 16, 64)])
    layers = {a.name: a for a in analyze_model(loaded).layers}
    assert set(layers) == {"conv1d", "up", "fc"}
    assert not layers["up"].trt["ok"] and "transposed conv" in layers["up"].trt["reason"]
    assert layers["up"].flops and layers["up"].flops > 0
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    decisions = {d.name: d for d in report.layers}
    assert set(decisions) == {"conv1d", "up", "fc"}
    assert decisions["conv1d"].status == "skipped" and "does not sparsify Conv1d" in decisions["conv1d"].reason
    assert decisions["up"].status == "skipped" and decisions["fc"].status == "sparsified"
