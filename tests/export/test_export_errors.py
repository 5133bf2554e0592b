"""An export the ONNX exporter cannot write fails in one line; the exporter's IR graph dump goes to
the debug log only."""

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return torch.diff(self.fc(x), dim=-1)  # aten::diff: no ONNX symbolic


def make():
    return Net(), ["x:1x16"]
'''


def test_unsupported_op_fails_in_one_line_and_dumps_the_graph_only_with_debug(cli, tmp_path, capfd):
    factory = tmp_path / "net.py"
    factory.write_text(NET)
    proc = cli("export", f"{factory}:make", "-o", str(tmp_path / "m.onnx"))
    native = capfd.readouterr()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "aten::diff" in lines[0], proc.stderr
    assert "Torch IR graph" not in native.out + native.err + proc.stdout
    assert not (tmp_path / "m.onnx").exists()
