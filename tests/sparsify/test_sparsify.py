import numpy as np
import pytest
import torch

from sparsekit.errors import CalibrationDataError, ModelSourceError, NoEligibleLayersError
from sparsekit.models.calib import load_calibration
from sparsekit.models.checkpoint import load_checkpoint, save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.sparsify.check import ELIGIBLE, check_model
from sparsekit.sparsify.sparsify import sparsify_


@pytest.mark.parametrize("name", ["mlp", "cnn", "bert"])
@pytest.mark.parametrize("method", ["magnitude", "sparsegpt"])
def test_every_sparsified_layer_is_2to4_on_trt_axis(name, method):
    loaded = load_model(name)
    calib = load_calibration(None, loaded.inputs, 16, 8)
    loaded.model, report = sparsify_(loaded.model, method, calib=calib)
    assert report.sparsified
    assert report.check.passed
    checked = {layer.name: layer for layer in report.check.layers}
    for name_ in report.sparsified:
        assert checked[name_].is_2to4 and checked[name_].sparsified
        assert 0.5 <= next(d.retained for d in report.layers if d.name == name_) <= 1.0


def test_raw_sparsegpt_on_kxk_convs_is_not_trt_layout():
    """Why the fallback exists: ModelOpt's own SparseGPT mask fails TensorRT's layout on 3x3 convs."""
    import modelopt.torch.sparsity as mts

    from sparsekit.models.calib import forward_loop

    loaded = load_model("cnn")
    calib = load_calibration(None, loaded.inputs, 16, 8)
    model = mts.sparsify(loaded.model, "sparsegpt", config={"forward_loop": forward_loop(calib)})
    report = check_model(model)
    bad = [layer.name for layer in report.layers if layer.sparsified and not layer.is_2to4]
    assert bad and all("conv" in n for n in bad)


def test_sparsegpt_gives_kxk_convs_trt_layout_masks_and_magnitude_on_request():
    loaded = load_model("cnn")
    calib = load_calibration(None, loaded.inputs, 16, 8)
    loaded.model, report = sparsify_(loaded.model, "sparsegpt", calib=calib)
    decisions = {d.name: d for d in report.layers}
    assert decisions["stages.0.conv1.0"].status == "sparsified" and "(r, s, c)" in decisions["stages.0.conv1.0"].reason
    assert decisions["stages.1.shortcut.0"].status == "sparsified"  # 1x1: SparseGPT's layout is TensorRT's
    assert decisions["stem.0.0"].status == "skipped"
    assert report.check.passed and set(report.sparsified) <= {layer.name for layer in report.check.layers if layer.is_2to4}
    again = load_model("cnn")
    again.model, magnitude = sparsify_(again.model, "sparsegpt", calib=calib, conv_masks="magnitude")
    m = {d.name: d for d in magnitude.layers}
    assert m["stages.0.conv1.0"].status == "fallback" and "magnitude masks asked for" in m["stages.0.conv1.0"].reason
    ours = dict(loaded.model.named_modules())["stages.0.conv1.0"].weight != 0
    theirs = dict(again.model.named_modules())["stages.0.conv1.0"].weight != 0
    assert not torch.equal(ours, theirs)  # SparseGPT chose other weights than magnitude


def test_sparsegpt_on_feature_maps_smaller_than_the_kernel():
    """ModelOpt's Hessian hook unfolds conv inputs without padding, which fails on 2x2 maps (the
    digits CNN): the kit collects k x k convs' statistics itself, with the conv's padding, and the
    1x1 / Linear layers still get ModelOpt's own SparseGPT masks."""
    import modelopt.torch.sparsity as mts

    from sparsekit.models.calib import forward_loop

    loaded = load_model("cnn", {"width": 16, "image_size": 8, "in_channels": 1})
    calib = load_calibration(None, loaded.inputs, 8, 4)
    raw = load_model("cnn", {"width": 16, "image_size": 8, "in_channels": 1})
    with pytest.raises(RuntimeError, match="sliding blocks"):  # ModelOpt alone
        mts.sparsify(raw.model, "sparsegpt", config={"forward_loop": forward_loop(calib)})
    original = {n: m.weight.detach().clone() for n, m in loaded.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    loaded.model, report = sparsify_(loaded.model, "sparsegpt", calib=calib)
    status = {d.name: d.status for d in report.layers}
    assert status["stages.2.conv2.0"] == "sparsified" and status["stages.2.shortcut.0"] == "sparsified"
    assert report.check.passed and set(report.sparsified) <= {layer.name for layer in report.check.layers if layer.is_2to4}
    conv = dict(loaded.model.named_modules())["stages.2.conv2.0"]
    kept = conv.weight.detach() != 0
    assert torch.equal(conv.weight.detach(), original["stages.2.conv2.0"] * kept)  # the original values, masked
    assert kept.float().mean().item() == pytest.approx(0.5)


def test_include_exclude_patterns(caplog):
    loaded = load_model("bert")
    loaded.model, report = sparsify_(loaded.model, "magnitude", include=["layers.*"], exclude=["*ffn_out", "*nomatch*"])
    assert "layers.0.ffn_in" in report.sparsified and "layers.0.ffn_out" not in report.sparsified
    assert "pooler" not in report.sparsified
    assert report.unmatched_patterns == ["*nomatch*"]
    assert "matches no" in caplog.text


def test_no_eligible_layers():
    loaded = load_model("mlp", {"hidden": 10, "in_features": 6})
    with pytest.raises(NoEligibleLayersError):
        sparsify_(loaded.model, "magnitude")
    loaded = load_model("mlp")
    with pytest.raises(NoEligibleLayersError):
        sparsify_(loaded.model, "magnitude", exclude=["*"])


def test_sparsegpt_needs_calibration():
    with pytest.raises(CalibrationDataError):
        sparsify_(load_model("mlp").model, "sparsegpt")


def test_checkpoint_roundtrip_keeps_masks_and_outputs(tmp_path):
    loaded = load_model("cnn")
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    x = loaded.inputs.random(batch=2, seed=3)
    with torch.no_grad():
        before = loaded.model(*x)
    save_checkpoint(loaded, tmp_path / "c.pt", {"note": "x"})
    restored = load_checkpoint(tmp_path / "c.pt")
    with torch.no_grad():
        after = restored.model(*x)
    assert torch.equal(before, after)
    again = check_model(restored.model)
    assert {layer.name for layer in again.layers if layer.sparsified} == set(report.sparsified)
    assert restored.checkpoint["note"] == "x"
    # masks stay enforced: a training step cannot revive pruned weights
    opt = torch.optim.SGD(restored.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    restored.model.train()
    for _ in range(3):
        opt.zero_grad()
        restored.model(*x).square().mean().backward()
        opt.step()
    assert check_model(restored.model).passed


def test_checkpoint_from_another_source_is_refused(tmp_path):
    import torch as t

    t.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ModelSourceError, match="not a sparsekit checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelSourceError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_require_eligible_flags_dense_layers():
    report = check_model(load_model("mlp").model, require=[ELIGIBLE])
    assert not report.passed and [layer.name for layer in report.failures] == ["body.0", "body.2"]  # the 10-output head: sparsify refuses it
    assert np.isclose(report.layers[0].zero_fraction, 0.0)
