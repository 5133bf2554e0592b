"""The ModelOpt-free magnitude masks (the GPU benchmark path) against ModelOpt's own."""

import pytest
import torch

from sparsekit.bench.torch_sparse import plain_model
from sparsekit.errors import NoEligibleLayersError
from sparsekit.models.source import load_model
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.direct import mask_weights_2to4_
from sparsekit.sparsify.sparsify import sparsify_


@pytest.mark.parametrize("name", ["bert", "cnn"])
def test_direct_masks_equal_modelopt_magnitude_element_for_element(name):
    ours = load_model(name)
    theirs = load_model(name)
    theirs.model.load_state_dict(ours.model.state_dict())  # the same dense weights
    report = mask_weights_2to4_(ours.model, exclude=["head"])
    theirs.model, modelopt_report = sparsify_(theirs.model, "magnitude", exclude=["head"])
    assert sorted(report.masked) == sorted(modelopt_report.sparsified) and report.masked
    baked = dict(plain_model(theirs.model).named_modules())
    for layer_name, module in ours.model.named_modules():
        if layer_name in report.masked:
            assert torch.equal(module.weight, baked[layer_name].weight), layer_name
            assert torch.equal(module.weight != 0, baked[layer_name].weight != 0), layer_name
    assert check_model(ours.model, require=report.masked).passed


def test_direct_masks_report_skips_and_refuse_when_nothing_fits():
    loaded = load_model("bert")
    before = {n: p.clone() for n, p in loaded.model.named_parameters()}
    report = mask_weights_2to4_(loaded.model, exclude=["pooler"])
    assert report.skipped["pooler"] == "excluded by pattern"
    assert "out % 8" in report.skipped["head"]
    assert torch.equal(loaded.model.pooler.weight, before["pooler.weight"])
    assert all(0.5 < r <= 1.0 for r in report.retained.values())
    with pytest.raises(NoEligibleLayersError):
        mask_weights_2to4_(load_model("bert").model, include=["nothing*"])


def test_direct_masks_keep_dtype_and_work_in_half_precision():
    layer = torch.nn.Linear(64, 32).half()
    mask_weights_2to4_(layer)
    assert layer.weight.dtype == torch.float16
    zeros = (layer.weight.view(32, 16, 4) == 0).sum(-1)
    assert bool((zeros >= 2).all())


def test_ties_and_rounding_break_the_way_modelopt_breaks_them():
    """Groups whose best pair sums round to the same float32: ModelOpt picks by pattern order."""
    from modelopt.torch.sparsity.weight_sparsity.magnitude import create_asp_mask

    from sparsekit.sparsify.pattern import magnitude_mask

    rows = [
        [1.0, 3e-8, 2e-8, 0.0],  # 1 + 3e-8 == 1 + 2e-8 in float32
        [0.0, 2e-8, 3e-8, 1.0],  # the same tie, mirrored: ModelOpt keeps the smaller one here
        [0.5, 0.5, 0.5, 0.5],  # all equal
        [-0.25, 0.25, 0.0, -0.25],  # equal magnitudes, mixed signs
        [0.0, 0.0, 0.0, 0.0],
    ]
    weight = torch.tensor(rows * 4).reshape(4, 20)  # [out=4, in=20]: 5 groups per row
    theirs = create_asp_mask(weight, "2:4 sparsity")
    assert torch.equal(magnitude_mask(weight, axis=1), theirs)
    assert (magnitude_mask(weight.numpy(), axis=1) == theirs.numpy()).all()
    # The mirrored row is the case a "keep the two largest" sort gets wrong.
    assert theirs[0, 4:8].tolist() == [False, True, False, True]
