"""2:4 masks survive training: optimizer steps with momentum and weight decay cannot revive pruned weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.recover.masks import MaskGuard, enforce_masks_, masked_parameters
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(64, 128), nn.Linear(128, 64), nn.Linear(64, 4)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def _sparse_net():
    torch.manual_seed(0)
    model, _ = sparsify_(Net(), "magnitude", exclude=["head"])
    return model


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1)], ids=["sgd-momentum-wd", "adamw-wd"])
def test_masks_survive_optimizer_steps_with_momentum_and_weight_decay(make_opt):
    model = _sparse_net()
    masks = {n: m.clone() for n, _, m in masked_parameters(model)}
    assert set(masks) == {"a", "b"}
    opt = make_opt(model.parameters())
    x, y = torch.randn(32, 64), torch.randint(0, 4, (32,))
    start = {n: p.detach().clone() for n, p, _ in masked_parameters(model)}
    with MaskGuard(model, opt):
        for _ in range(25):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert check_model(model).passed
    for name, param, mask in masked_parameters(model):
        assert torch.equal(mask, masks[name]), "the mask itself must not change"
        assert torch.count_nonzero(param.detach()[~mask]) == 0, "pruned raw weights revived"
        for value in opt.state[param].values():
            if torch.is_tensor(value) and value.shape == param.shape:
                assert torch.count_nonzero(value[~mask]) == 0, "optimizer state of pruned weights is not zero"
        assert not torch.equal(param.detach()[mask], start[name][mask]), "kept weights must train"


def test_without_the_guard_weight_decay_moves_pruned_raw_weights():
    """What the guard is for: ModelOpt keeps the dense parameter; decay and momentum change its pruned entries."""
    model = _sparse_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    _, param, mask = next(masked_parameters(model))
    before = param.detach()[~mask].clone()
    loss = model(torch.randn(8, 64)).sum()
    loss.backward()
    opt.step()
    assert not torch.equal(param.detach()[~mask], before)
    assert enforce_masks_(model, opt) == 2
    assert torch.count_nonzero(param.detach()[~mask]) == 0


def test_guard_removes_its_hook():
    model = _sparse_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)
    with MaskGuard(model, opt):
        pass
    _, param, mask = next(masked_parameters(model))
    with torch.no_grad():
        param[~mask] = 1.0
    model(torch.randn(4, 64)).sum().backward()
    opt.step()
    assert torch.count_nonzero(param.detach()[~mask]) == int((~mask).sum()), "no enforcement after the guard exits"
