import importlib.util

import pytest
import torch

from sparsekit.errors import CalibrationDataError, InputShapeError, ModelSourceError
from sparsekit.models.calib import load_calibration
from sparsekit.models.source import load_model, parse_model_args
from sparsekit.input_spec import parse_input_shape
from sparsekit.models.zoo import ZOO
from tests.conftest import DATA

USER = DATA / "user_model.py"


@pytest.mark.parametrize("name", ["mlp", "cnn", "bert"])
def test_small_zoo_models_build_and_run(name):
    loaded = load_model(name)
    assert loaded.source["kind"] == "zoo" and loaded.inputs.tensors
    with torch.no_grad():
        out = loaded.model(*loaded.inputs.random(batch=2))
    assert out.shape[0] == 2


def test_full_size_zoo_entries_have_reference_sizes():
    from sparsekit.models.zoo import build_zoo_model

    r50, spec, _ = build_zoo_model("resnet50")
    assert 25.0e6 < sum(p.numel() for p in r50.parameters()) < 26.0e6
    assert spec.tensors[0].shape == (1, 3, 224, 224)
    bert, spec, _ = build_zoo_model("bert-base")
    encoder = sum(p.numel() for n, p in bert.named_parameters() if n.startswith("layers."))
    assert 84.0e6 < encoder < 86.0e6  # 12 x 7.08 M, as in BERT-base
    assert set(ZOO) >= {"mlp", "cnn", "resnet50", "bert", "bert-base"}


def test_zoo_args_are_typed():
    loaded = load_model("bert", parse_model_args(["layers=1", "hidden=128", "heads=2"]))
    assert len(loaded.model.layers) == 1
    with pytest.raises(ModelSourceError, match="has no argument"):
        load_model("bert", {"nope": "1"})
    with pytest.raises(ModelSourceError, match="is not a int"):
        load_model("bert", {"layers": "two"})
    with pytest.raises(ModelSourceError, match="not key=value"):
        parse_model_args(["layers"])


def test_factory_file_and_module():
    loaded = load_model(f"{USER}:build", {"width": "32"})
    assert loaded.inputs.tensors[0].shape == (2, 16, 12, 12)
    assert loaded.model.proj.out_features == 32
    mod = load_model("tests.data.user_model:build")
    assert mod.source["kind"] == "factory"


def test_factory_errors():
    with pytest.raises(ModelSourceError, match="does not exist"):
        load_model("missing.py:build")
    with pytest.raises(ModelSourceError, match="has no callable"):
        load_model(f"{USER}:nope")
    with pytest.raises(ModelSourceError, match="raised RuntimeError: weights not found"):
        load_model(f"{USER}:broken")
    with pytest.raises(ModelSourceError, match="not an nn.Module"):
        load_model(f"{USER}:not_a_model")
    with pytest.raises(ModelSourceError, match="not a built-in model"):
        load_model("resnet9000")


def test_input_shapes():
    with pytest.raises(InputShapeError, match="does not declare its input shape"):
        load_model(f"{USER}:build_without_shapes")
    loaded = load_model(f"{USER}:build_without_shapes", input_shapes=["1x16x8x8"])
    assert loaded.inputs.tensors[0].shape == (1, 16, 8, 8)
    with pytest.raises(InputShapeError, match="rejects inputs"):
        load_model(f"{USER}:build_without_shapes", input_shapes=["1x3x8x8"])
    assert parse_input_shape("input_ids:2x128:int64").dtype == "int64"
    with pytest.raises(InputShapeError):
        parse_input_shape("1 x 3")
    with pytest.raises(InputShapeError, match="unknown dtype"):
        parse_input_shape("x:1x3:float128")


def test_calibration_sources(tmp_path):
    spec = load_model(f"{USER}:build").inputs
    torch.save(torch.randn(10, 16, 12, 12), tmp_path / "good.pt")
    batches = load_calibration(str(tmp_path / "good.pt"), spec, batch_size=4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    torch.save(torch.randn(10, 3, 12, 12), tmp_path / "bad.pt")
    with pytest.raises(CalibrationDataError, match="sample shape"):
        load_calibration(str(tmp_path / "bad.pt"), spec)
    with pytest.raises(CalibrationDataError, match="does not exist"):
        load_calibration(str(tmp_path / "none.pt"), spec)
    assert len(load_calibration(f"{USER}:calib_batches", spec)) == 3
    ids = load_model("bert").inputs
    torch.save(torch.randn(4, 64), tmp_path / "float_ids.pt")
    with pytest.raises(CalibrationDataError, match="expects int64"):
        load_calibration(str(tmp_path / "float_ids.pt"), ids)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed (it is optional; CPU CI uses the zoo)")
def test_torchvision_source():
    loaded = load_model("torchvision:resnet18")
    assert loaded.source["kind"] == "torchvision"


def test_torchvision_missing_is_a_clear_error():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    with pytest.raises(ModelSourceError, match="torchvision cannot be imported"):
        load_model("torchvision:resnet18")
