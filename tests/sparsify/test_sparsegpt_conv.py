"""SparseGPT on k x k convs in TensorRT's layout: the column order, the Hessian, the masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparsekit.sparsify.sparsegpt_conv import ConvHessians, sparsegpt_conv_mask, supports, trt_column_order


def _trt_groups(mask: np.ndarray) -> np.ndarray:
    """Kept count of every TensorRT group: 4 consecutive input channels at one (k, r, s)."""
    k, c, r, s = mask.shape
    return mask.transpose(0, 2, 3, 1).reshape(k, r, s, c // 4, 4).sum(-1)


@pytest.mark.parametrize("shape", [(8, 3, 3), (16, 5, 5), (4, 1, 3)])
def test_column_order_puts_input_channels_together_and_restores(shape):
    c, r, s = shape
    w = torch.randn(6, c, r, s)
    order = trt_column_order(c, r, s)
    reordered = w.flatten(1)[:, order]
    for j in range(0, c * r * s, 4):  # each group of 4 columns: 4 consecutive channels at one (r, s)
        pos, c0 = divmod(j, c)
        ri, si = divmod(pos, s)
        assert torch.equal(reordered[:, j : j + 4], w[:, c0 : c0 + 4, ri, si])
    restored = torch.empty_like(reordered)
    restored[:, order] = reordered
    assert torch.equal(restored.view_as(w), w)


def test_masks_are_exactly_2to4_on_trt_axis_and_match_modelopt_on_the_reordered_problem():
    from modelopt.torch.sparsity.weight_sparsity.sparsegpt import create_sgpt_mask

    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    x = torch.randn(200, 72)
    x[:, 5] = 0.0  # one input column never excited
    h = x.T @ x / 200
    mask = sparsegpt_conv_mask(w, h)
    assert mask.shape == (16, 8, 3, 3) and (_trt_groups(mask) == 2).all()
    order = trt_column_order(8, 3, 3)
    hh = h[order][:, order].clone()
    dead = torch.diagonal(hh) == 0
    torch.diagonal(hh)[dead] = 1e-6 * float(torch.diagonal(hh)[~dead].mean())
    ref = create_sgpt_mask(w.flatten(1)[:, order], hh, {"pattern": "2:4 sparsity", "hessian_damp": 0.1, "col_block_size": 128, "row_block_size": -1})
    assert np.array_equal(mask.reshape(16, -1)[:, order.numpy()], ref.numpy())


def test_hessian_uses_the_convs_padding_stride_and_dilation():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=2, stride=2, dilation=2)
    batches = [torch.randn(3, 4, 5, 5), torch.randn(2, 4, 5, 5)]
    with ConvHessians({"c": conv}) as stats:
        for b in batches:
            conv(b)
    cols = torch.cat([nn.functional.unfold(b, 3, dilation=2, padding=2, stride=2).permute(1, 0, 2).flatten(1) for b in batches], dim=1)
    expected = 2.0 / 5 * cols @ cols.T
    assert stats.samples["c"] == 5
    torch.testing.assert_close(stats.hessian["c"], expected, rtol=1e-5, atol=1e-5)


def test_what_cannot_take_it():
    assert not supports(nn.Conv2d(8, 8, 3, groups=2))[0]
    assert not supports(nn.Conv2d(6, 8, 3))[0]
    assert supports(nn.Conv2d(8, 8, 3, padding=1))[0]
