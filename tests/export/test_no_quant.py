"""INT8 export of models ModelOpt's quantizer cannot take as they are: weight-norm parametrized
layers are folded first (Wav2Vec2's positional conv), and ``no_quant`` keeps chosen layers in float."""

from __future__ import annotations

import onnx
import torch
from torch import nn

from sparsekit.export.config import ExportConfig
from sparsekit.export.export import export_all_
from sparsekit.models.source import wrap


class WeightNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(32, 32, 3, padding=1), name="weight", dim=2)
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 16)

    def forward(self, x):  # x [B, 32, T]
        y = self.pos_conv(x).mean(dim=2)
        return self.fc2(torch.relu(self.fc1(y)))


def _quantized_weights(path) -> set[str]:
    """Initializers that feed a DequantizeLinear (the weights the int8 ONNX stores quantized)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    return {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}


def test_a_weight_norm_layer_is_folded_and_no_quant_keeps_layers_in_float(tmp_path):
    torch.manual_seed(0)
    loaded = wrap(WeightNormNet().eval(), [(1, 32, 8)])
    x = loaded.inputs.random(seed=1)
    with torch.no_grad():
        before = loaded.model(*x)
    (everything,) = export_all_(loaded, ExportConfig(precisions=["int8"], calib_samples=16), {"int8": tmp_path / "all.onnx"})
    assert everything.parity.passed
    all_quantized = _quantized_weights(everything.path)
    (kept,) = export_all_(loaded, ExportConfig(precisions=["int8"], calib_samples=16, no_quant=["fc1"]), {"int8": tmp_path / "kept.onnx"})
    assert kept.parity.passed
    some_quantized = _quantized_weights(kept.path)
    assert len(some_quantized) == len(all_quantized) - 1  # fc1's weight is stored in float
    with torch.no_grad():  # the caller's model still computes what it did (the fold ran on a copy)
        torch.testing.assert_close(loaded.model(*x), before)
    assert nn.utils.parametrize.is_parametrized(loaded.model.pos_conv)
