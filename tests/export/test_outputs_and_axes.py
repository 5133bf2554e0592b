"""ONNX export of models as they come: named outputs (every one compared), dynamic axes beyond the
batch, a tied weight stored once, TensorRT shape profiles over batch and sequence, and FLOP shares of
an ONNX with a dynamic sequence axis."""

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sparsekit.export.export import export_
from sparsekit.export.parity import compare_onnx_to_torch
from sparsekit.models.source import load_model, wrap
from tests.conftest import DATA
from tests.models.conftest import frozen_import_heap, one_torch_thread  # noqa: F401 - fixtures used below
from tests.models.test_inputs_outputs import _Outputs

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None

pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")


def test_every_output_is_named_and_compared(tmp_path):
    loaded = wrap(_Outputs("dict"), ["x:2x16", "scale:2x32"])
    result = export_(loaded, "fp32", tmp_path / "m.onnx")
    graph = onnx.load(str(result.path)).graph
    assert [o.name for o in graph.output] == ["logits", "hidden.output", "hidden.output1"]
    assert [i.name for i in graph.input] == ["x", "scale"]
    assert result.parity.passed and set(result.parity.outputs) == {"logits", "hidden.output", "hidden.output1"}
    # break only the last output (a sum nothing else reads): parity must fail and name it
    model = onnx.load(str(result.path))
    out = model.graph.output[2].name
    producer = next(n for n in model.graph.node if out in n.output)
    producer.output[list(producer.output).index(out)] = out + "_raw"
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.5, dtype=np.float32), "k"))
    model.graph.node.append(onnx.helper.make_node("Mul", [out + "_raw", "k"], [out]))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    bad = compare_onnx_to_torch(tmp_path / "bad.onnx", loaded.model, loaded.inputs, 1e-4, "fp32")
    assert not bad.passed and bad.worst_output == "hidden.output1" and "output 'hidden.output1'" in bad.reason()
    assert bad.outputs["logits"] < 1e-4


def test_any_input_axis_can_be_dynamic(tmp_path):
    loaded = load_model(f"{DATA / 'user_model.py'}:build", {"width": 32}, dynamic_axes=["input:2=height", "input:3=width"])
    result = export_(loaded, "fp32", tmp_path / "u.onnx")
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 16, "height", "width"]
    assert result.parity.passed and [s["height"] for s in result.parity.sizes] == [12, 6]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from tests.data import hf_factories

    return hf_factories.save_folder("gpt2", tmp_path_factory.mktemp("gpt2") / "gpt2")


def _copies(path, weight: np.ndarray) -> int:
    """Initializers holding ``weight`` or its transpose (in any float type)."""
    found = 0
    for t in onnx.load(str(path)).graph.initializer:
        a = numpy_helper.to_array(t).astype(np.float32)
        if a.shape == weight.shape and np.allclose(a, weight, atol=1e-3) or a.shape == weight.T.shape and np.allclose(a, weight.T, atol=1e-3):
            found += 1
    return found


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (the 'minilm' extra)")
def test_tied_embedding_is_stored_once(gpt2_dir, tmp_path):
    loaded = load_model(gpt2_dir, seq_len=8)
    wte = loaded.model.transformer.wte.weight.detach().numpy()
    for precision in ("fp32", "fp16"):
        result = export_(loaded, precision, tmp_path / f"g.{precision}.onnx")
        assert _copies(result.path, wte) == 1, precision  # lm_head reads the embedding through a Transpose
        head = next(layer for layer in result.check.layers if layer.name == "lm_head")
        assert head.axis == 1 and "Transpose" not in head.weight  # checked on the stored embedding's input axis


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (the 'minilm' extra)")
def test_onnx_flop_shares_use_the_exported_sequence_length(gpt2_dir, tmp_path):
    from sparsekit.analyze.onnx_layers import analyze_onnx
    from sparsekit.analyze.torch_layers import analyze_model

    loaded = load_model(gpt2_dir, seq_len=32)
    torch_total = analyze_model(loaded).total_flops
    report = analyze_onnx(export_(loaded, "fp32", tmp_path / "g.onnx").path)
    assert abs(report.total_flops - torch_total) < 0.1 * torch_total  # attention counted at 32 positions, not 1
    assert report.summary["amdahl_bound"] < 1.95


@pytest.mark.skipif(not HAS_TRANSFORMERS or importlib.util.find_spec("tensorrt_rtx") is None, reason="needs transformers and TensorRT-RTX (builds ahead of time on CPU)")
def test_tensorrt_profile_over_batch_and_sequence(tmp_path):
    from sparsekit.backends.build import build_engine
    from sparsekit.backends.spec import BuildSpec, parse_shapes
    from tests.data import hf_factories

    loaded = load_model(hf_factories.save_folder("bert", tmp_path / "bert"), seq_len=16)
    result = export_(loaded, "fp16", tmp_path / "b.fp16.onnx")
    shapes = parse_shapes([f"{name}:1x8,2x16,4x32" for name in loaded.inputs.names])
    assert shapes["input_ids"].max == (4, 32)
    record = build_engine(result.path, BuildSpec(backend="tensorrt-rtx", shapes=shapes), tmp_path / "engines")
    assert record.artifact.is_file() and record.artifact.stat().st_size > 0
