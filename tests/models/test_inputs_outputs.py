"""Input declarations (strings, tuples, ranges, dynamic axes), typed model arguments, and outputs
flattened to named tensors, for models that are not Hugging Face's."""

import dataclasses

import pytest
import torch
from torch import nn

from sparsekit.errors import InputShapeError, ModelSourceError
from sparsekit.models.build import declared_inputs
from sparsekit.models.outputs import flatten_outputs
from sparsekit.models.source import load_model, parse_model_args, wrap
from sparsekit.input_spec import InputSpec, apply_dynamic_axes, input_from_tuple, parse_input_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")


def test_shape_syntax_with_ranges():
    t = parse_input_shape("input_ids:2x16:int64:5..9")
    assert (t.name, t.shape, t.dtype, t.low, t.high) == ("input_ids", (2, 16), "int64", 5, 9)
    assert parse_input_shape("ids:1x8:0..100").dtype == "int64"  # a range implies an integer input
    assert parse_input_shape("ids:1x8:int64").high is None
    with pytest.raises(InputShapeError, match="empty value range"):
        parse_input_shape("ids:1x8:int64:9..9")
    with pytest.raises(InputShapeError, match="for a float32 input"):
        parse_input_shape("x:1x8:float32:0..4")


def test_declarations_as_strings_tuples_and_shapes():
    spec = declared_inputs(["a:1x4", ("ids", (1, 8), "int64"), ("types", [1, 8], "int64", (0, 2)), ("pos", (1, 8), "int64", 64), (1, 3)])
    assert spec.names == ["a", "ids", "types", "pos", "input4"]
    assert [(t.low, t.high) for t in spec.tensors[2:4]] == [(0, 2), (0, 64)]
    assert declared_inputs((1, 3, 8, 8)).tensors[0].shape == (1, 3, 8, 8)  # one bare shape
    for bad in ([("ids", (1, 8))], [("ids", "1x8", "int64")], [3.5], [("ids", (1, 8), "int64", "big")]):
        with pytest.raises(InputShapeError):
            declared_inputs(bad)
    with pytest.raises(InputShapeError, match=r"\(name, shape, dtype\[, range\]\)"):
        input_from_tuple(("ids",))


def test_dynamic_axes_option():
    spec = InputSpec((parse_input_shape("x:1x3x8x8"),))
    spec = apply_dynamic_axes(spec, ["x:2=height", "x:3"])
    assert spec.tensors[0].axes == {0: "batch", 2: "height", 3: "axis3"}
    assert spec.resized(2, {"height": 4}).tensors[0].shape == (2, 3, 4, 8)
    with pytest.raises(InputShapeError, match="no axis 0"):
        apply_dynamic_axes(spec, ["x:0=b"])
    with pytest.raises(InputShapeError, match="no axis 4"):
        apply_dynamic_axes(spec, ["x:4"])
    with pytest.raises(InputShapeError, match="does not take"):
        apply_dynamic_axes(spec, ["y:1"])
    with pytest.raises(InputShapeError, match="NAME:AXIS"):
        apply_dynamic_axes(spec, ["x=1"])


def test_model_args_are_typed_scalars(tmp_path):
    assert parse_model_args(["a=12", "b=0.5", "c=true", "d=False", "e=relu", "f=1e-3", "g=-3"]) == {"a": 12, "b": 0.5, "c": True, "d": False, "e": "relu", "f": 1e-3, "g": -3}
    (tmp_path / "typed.py").write_text(
        "import torch\n"
        "def build(width, scale, bias, act):\n"
        "    assert isinstance(width, int) and isinstance(scale, float) and isinstance(bias, bool) and isinstance(act, str), (width, scale, bias, act)\n"
        "    return torch.nn.Linear(16, width, bias=bias), [(1, 16)]\n"
    )
    loaded = load_model(f"{tmp_path / 'typed.py'}:build", parse_model_args(["width=32", "scale=0.5", "bias=false", "act=gelu"]))
    assert loaded.model.out_features == 32 and loaded.model.bias is None
    assert loaded.source["args"] == {"width": 32, "scale": 0.5, "bias": False, "act": "gelu"}
    zoo = load_model("mlp", parse_model_args(["hidden=64", "depth=1"]))
    assert zoo.model.head.in_features == 64
    with pytest.raises(ModelSourceError, match="is not a int"):
        load_model("mlp", {"hidden": 0.5})


@dataclasses.dataclass
class _Pair:
    score: torch.Tensor
    extra: torch.Tensor | None = None


class _Outputs(nn.Module):
    """Two inputs (passed by keyword: the second is forward's third parameter), nested outputs."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 8)

    def forward(self, x, unused=None, scale=None):
        h = self.a(x) * scale
        y = self.b(torch.relu(h))
        if self.kind == "dict":
            return {"logits": y, "loss": None, "hidden": (h, h.sum(-1))}
        if self.kind == "dataclass":
            return _Pair(y)
        return "not a tensor"


def test_outputs_are_flattened_to_named_tensors():
    names = [n for n, _ in flatten_outputs({"logits": torch.ones(1), "loss": None, "hidden": (torch.ones(1), torch.ones(1))})]
    assert names == ["logits", "hidden.output", "hidden.output1"]
    loaded = wrap(_Outputs("dict"), ["x:2x16", "scale:2x32"])
    out = loaded.model(*loaded.inputs.random(seed=0))
    assert isinstance(out, tuple) and [t.shape for t in out] == [(2, 8), (2, 32), (2,)]
    assert "outputs logits, hidden.output, hidden.output1" in loaded.notes[0]
    single = wrap(_Outputs("dataclass"), ["x:2x16", "scale:2x32"])
    assert isinstance(single.model(*single.inputs.random(seed=0)), torch.Tensor)  # one output: a plain tensor
    with pytest.raises(ModelSourceError, match="is a str, which is not a tensor"):
        wrap(_Outputs("str"), ["x:2x16", "scale:2x32"])


def test_plain_models_are_left_untouched():
    model = nn.Sequential(nn.Linear(16, 8))
    wrap(model, [(1, 16)])
    assert "forward" not in model.__dict__  # positional tensor in, tensor out: nothing to adapt
