"""Learned 2:4 masks (SR-STE): masks move during training, end exactly 2:4 in TensorRT's layout, survive export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.models.source import load_model
from sparsekit.recover.finetune import TrainingConfig, TrainingState, finetune_
from sparsekit.recover.masks import masked_parameters
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


def _sparse_mlp():
    torch.manual_seed(0)
    loaded = load_model("mlp", {"in_features": 64, "hidden": 128, "depth": 1})
    loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head"])
    return loaded


def _batches():
    g = torch.Generator().manual_seed(1)
    return [((torch.randn(16, 64, generator=g),), torch.randint(0, 10, (16,), generator=g)) for _ in range(8)]


def _loss(m, b):
    return nn.functional.cross_entropy(m(*b[0]), b[1])


def _masks(model):
    return {name: mask.clone() for name, _, mask in masked_parameters(model)}


def test_learned_masks_move_and_end_exactly_2to4_on_trt_axis(tmp_path):
    from sparsekit.export.export import export_

    loaded = _sparse_mlp()
    before = _masks(loaded.model)
    report = finetune_(loaded.model, lambda e: _batches(), _loss, TrainingConfig(epochs=3, lr=5e-2, masks="learned"))
    after = _masks(loaded.model)
    assert set(after) == set(before) and report.mask_flips > 0
    assert any(not torch.equal(before[n], after[n]) for n in before)  # weights moved between kept and pruned
    for name, param, mask in masked_parameters(loaded.model):
        groups = mask.reshape(mask.shape[0], -1, 4).sum(-1)
        assert bool((groups == 2).all())  # exactly 2 of every 4 input channels: TensorRT's groups
        assert bool((param[~mask] == 0).all())  # frozen: pruned entries are exact zeros
    assert check_model(loaded.model).passed
    result = export_(loaded, "fp16", tmp_path / "m.fp16.onnx")
    assert result.check.passed and len(result.sparsified) == len(before)


def test_fixed_masks_do_not_move():
    loaded = _sparse_mlp()
    before = _masks(loaded.model)
    report = finetune_(loaded.model, lambda e: _batches(), _loss, TrainingConfig(epochs=2, lr=5e-2))
    assert report.mask_flips == 0
    assert all(torch.equal(before[n], m) for n, m in _masks(loaded.model).items())


@pytest.mark.parametrize("until", [1.0, 0.25], ids=["masks-moving", "resumed-after-the-freeze"])
def test_learned_masks_resume_exactly(tmp_path, until):
    config = TrainingConfig(epochs=2, lr=5e-2, masks="learned", optimizer="sgd", warmup=0.0, mask_update_until=until)
    steps = len(_batches())
    whole = _sparse_mlp()
    finetune_(whole.model, lambda e: _batches(), _loss, config)

    def stop_in_epoch_two(info):
        if info["step"] == steps + 1:
            raise KeyboardInterrupt

    state = TrainingState(tmp_path / "s.pt", "fp")
    first = _sparse_mlp()
    with pytest.raises(KeyboardInterrupt):
        finetune_(first.model, lambda e: _batches(), _loss, config, state, progress=stop_in_epoch_two)
    resumed = _sparse_mlp()
    report = finetune_(resumed.model, lambda e: _batches(), _loss, config, state)
    assert report.resumed_from_step == steps
    assert report.masks_frozen_at == (None if until == 1.0 else round(until * 2 * steps))  # frozen in epoch 1: fixed masks from the resume on
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_masks_stop_moving_after_the_update_share_and_the_rest_trains_them_fixed():
    steps = 3 * len(_batches())
    whole = _sparse_mlp()
    moving = finetune_(whole.model, lambda e: _batches(), _loss, TrainingConfig(epochs=3, lr=5e-2, masks="learned"))
    loaded = _sparse_mlp()
    seen = []

    def record(info):  # the masks after each step
        seen.append(_masks(loaded.model))

    report = finetune_(loaded.model, lambda e: _batches(), _loss, TrainingConfig(epochs=3, lr=5e-2, masks="learned", mask_update_until=0.5), progress=record)
    assert report.masks_frozen_at == steps // 2 and moving.masks_frozen_at is None
    assert 0 < report.mask_flips < moving.mask_flips  # they moved, then stopped
    frozen = seen[report.masks_frozen_at - 1]
    assert all(all(torch.equal(frozen[n], later[n]) for n in frozen) for later in seen[report.masks_frozen_at:])
    for name, param, mask in masked_parameters(loaded.model):
        assert bool((mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2).all()) and bool((param[~mask] == 0).all())
    assert torch.equal(_masks(loaded.model)[name], frozen[name])
