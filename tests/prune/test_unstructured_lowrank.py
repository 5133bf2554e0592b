"""Unstructured magnitude pruning and low-rank factorisation: what they zero or factor, and that
checkpoints, fine-tuning and export keep it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.models.checkpoint import save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.models.low_rank import LowRankLinear
from sparsekit.prune.lowrank import factorize_, low_rank_size
from sparsekit.prune.unstructured import NO_SPEEDUP, prune_unstructured_
from sparsekit.recover.finetune import TrainingConfig, finetune_


def _linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def test_unstructured_zeros_the_smallest_share_of_each_layer():
    torch.manual_seed(0)
    model = load_model("mlp").model
    before = {n: m.weight.detach().abs().clone() for n, m in _linears(model).items()}
    report = prune_unstructured_(model, 0.3)
    for name, layer in _linears(model).items():
        w = layer.weight.detach()
        zero = w == 0
        assert abs(zero.float().mean().item() - 0.3) < 1e-3
        assert before[name][zero].max() <= before[name][~zero].min()  # the smallest went
    assert report.note == NO_SPEEDUP and abs(report.sparsity - 0.3) < 1e-3


def test_global_scope_and_threshold():
    torch.manual_seed(0)
    model = load_model("mlp").model
    with torch.no_grad():
        _linears(model)["head"].weight.mul_(100.0)  # a layer of large weights keeps them under one global cut
    report = prune_unstructured_(model, 0.5, scope="global")
    assert report.layers["head"] < 0.05 and abs(report.sparsity - 0.5) < 1e-3
    model = load_model("mlp").model
    report = prune_unstructured_(model, threshold=0.01)
    for layer in _linears(model).values():
        w = layer.weight.detach()
        assert bool(((w == 0) | (w.abs() >= 0.01)).all())
    with pytest.raises(SparsekitError, match="amount must be in"):
        prune_unstructured_(model, 1.5)


def test_fine_tuning_with_keep_zeros_keeps_them():
    torch.manual_seed(0)
    model = load_model("mlp", {"in_features": 32, "hidden": 64}).model
    prune_unstructured_(model, 0.5)
    zeros = {n: (m.weight == 0).clone() for n, m in _linears(model).items()}
    batches = [((torch.randn(8, 32),), torch.randint(0, 10, (8,))) for _ in range(4)]
    loss = lambda m, b: nn.functional.cross_entropy(m(*b[0]), b[1])  # noqa: E731
    finetune_(model, lambda e: batches, loss, TrainingConfig(epochs=2, lr=1e-2, weight_decay=0.1, keep_zeros=True))
    for name, layer in _linears(model).items():
        assert bool((layer.weight[zeros[name]] == 0).all())
    finetune_(model, lambda e: batches, loss, TrainingConfig(epochs=1, lr=1e-2))  # without it, they move
    assert any(bool((layer.weight[zeros[n]] != 0).any()) for n, layer in _linears(model).items())


def test_low_rank_at_full_rank_is_exact_and_below_it_is_the_truncated_svd(tmp_path):
    torch.manual_seed(0)
    loaded = load_model("mlp", {"in_features": 64, "hidden": 128, "depth": 1})
    x = loaded.inputs.random(batch=4)
    dense_w = _linears(loaded.model)["net.0"].weight.detach().clone() if "net.0" in _linears(loaded.model) else next(iter(_linears(loaded.model).values())).weight.detach().clone()
    name = next(n for n, m in _linears(loaded.model).items() if m.weight.shape == dense_w.shape)
    report = factorize_(loaded, 0.25, include=[name], round_to=8)
    layer = loaded.model.get_submodule(name)
    assert isinstance(layer, LowRankLinear) and layer.rank == low_rank_size(*dense_w.shape, 0.25, 8) == 16
    approx = layer.up.weight @ layer.down.weight
    u, s, vh = torch.linalg.svd(dense_w, full_matrices=False)
    best = u[:, :16] @ torch.diag(s[:16]) @ vh[:16]
    torch.testing.assert_close(approx, best, rtol=1e-4, atol=1e-5)
    assert report.params[1] < report.params[0]
    save_checkpoint(loaded, tmp_path / "lr.pt")
    again = load_model(str(tmp_path / "lr.pt"))
    with torch.no_grad():
        assert torch.equal(loaded.model(*x), again.model(*x))
    with pytest.raises(NoEligibleLayersError):
        factorize_(load_model("mlp"), 0.99)


def test_low_rank_factors_are_ordinary_layers_that_take_2to4_and_export(tmp_path):
    from sparsekit.export.export import export_
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model("bert", {"layers": 1})
    factorize_(loaded, 0.5, exclude=["head"])
    loaded.model, report = sparsify_(loaded.model, "magnitude", exclude=["head"])
    assert any(n.endswith(".down") for n in report.sparsified) and any(n.endswith(".up") for n in report.sparsified)
    result = export_(loaded, "fp16", tmp_path / "m.fp16.onnx")
    assert result.check.passed and len(result.sparsified) == len(report.sparsified)
