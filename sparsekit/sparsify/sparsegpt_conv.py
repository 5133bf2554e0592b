"""SparseGPT for k x k convolutions with masks in TensorRT's layout.

ModelOpt's SparseGPT flattens a conv weight ``[K, C, R, S]`` to ``[K, C*R*S]`` with the columns in
``(c, r, s)`` order and makes every 4 consecutive columns 2:4, so a group runs along the kernel
window of one channel, which TensorRT cannot use (it groups 4 consecutive *input channels* at each
kernel position). Ordering the columns ``(r, s, c)`` instead puts each group of 4 on 4 input
channels at one ``(r, s)``: exactly TensorRT's groups. This module

1. collects the layer-input Hessian ``H = 2/N * X X^T`` of each k x k conv from its im2col columns
   ``X [C*R*S, B*L]`` (with the conv's own padding, stride and dilation: ModelOpt 0.47 unfolds
   without padding, which skews the border statistics and fails on maps smaller than the kernel);
2. reorders the weight's columns and the Hessian's rows and columns to ``(r, s, c)``;
3. runs ModelOpt's own SparseGPT mask search (``create_sgpt_mask``) on the reordered problem;
4. puts the mask back in ``(c, r, s)`` order: a 2:4 mask on axis 1 of ``[K, C, R, S]``.

Grouped and depthwise convs (``groups > 1``), and convs that no calibration sample reached, keep
the TensorRT-layout magnitude mask; the report says why.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from sparsekit._lazy import lazy_import

sparsegpt = lazy_import("modelopt.torch.sparsity.weight_sparsity.sparsegpt")


def trt_column_order(channels: int, kernel_h: int, kernel_w: int) -> torch.Tensor:
    """``order [C*R*S]``: the ``(c, r, s)``-flattened column index of each ``(r, s, c)``-ordered column.

    ``weight.flatten(1)[:, order]`` lists the columns kernel position by kernel position, the input
    channels consecutive within each; ``reordered[:, inverse]`` with ``inverse = argsort(order)``
    restores the weight's own layout.
    """
    c = torch.arange(channels).view(1, 1, channels)
    r = torch.arange(kernel_h).view(kernel_h, 1, 1)
    s = torch.arange(kernel_w).view(1, kernel_w, 1)
    return (c * kernel_h * kernel_w + r * kernel_w + s).flatten()


def supports(module: nn.Module) -> tuple[bool, str]:
    """Whether this conv can get a TensorRT-layout SparseGPT mask, and why not."""
    if not isinstance(module, nn.Conv2d):
        return False, "not a Conv2d"
    if module.groups != 1:
        return False, f"grouped conv (groups={module.groups}): its im2col columns are per group"
    if module.in_channels % 4:
        return False, f"input channels ({module.in_channels}) not a multiple of 4"
    if isinstance(module.padding, str):
        return False, f"padding='{module.padding}' (im2col needs explicit padding)"
    return True, ""


class ConvHessians:
    """Forward hooks that accumulate each conv's layer-input Hessian over a calibration loop.

    Usage::

        with ConvHessians({name: conv, ...}) as hessians:
            forward_loop(model)
        hessians.hessian[name], hessians.samples[name]
    """

    def __init__(self, layers: dict[str, nn.Conv2d]) -> None:
        self.layers = layers
        self.hessian: dict[str, torch.Tensor] = {}
        self.samples: dict[str, int] = {}
        self._handles = []

    def _hook(self, name: str):
        def hook(module: nn.Conv2d, args, output) -> None:
            x = args[0].detach().float()
            if x.dim() == 3:
                x = x.unsqueeze(0)
            cols = nn.functional.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)  # [B, C*R*S, L]
            batch = x.shape[0]
            cols = cols.permute(1, 0, 2).flatten(1)  # [C*R*S, B*L]
            n = self.samples.get(name, 0)
            h = self.hessian.get(name)
            if h is None:
                h = torch.zeros(cols.shape[0], cols.shape[0])
            h *= n / (n + batch)  # the running mean ModelOpt keeps: H = 2/N sum x x^T over samples
            n += batch
            cols = (2.0 / n) ** 0.5 * cols
            h += cols @ cols.T
            self.hessian[name], self.samples[name] = h, n

        return hook

    def __enter__(self) -> "ConvHessians":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@torch.no_grad()
def sparsegpt_conv_mask(weight: torch.Tensor, hessian: torch.Tensor, hessian_damp: float = 0.1, col_block_size: int = 128) -> np.ndarray:
    """2:4 keep-mask ``[K, C, R, S]`` (bool) of a conv weight by ModelOpt's SparseGPT search in TensorRT's layout.

    Args:
        weight: ``[K, C, R, S]`` with ``C % 4 == 0``.
        hessian: ``[C*R*S, C*R*S]`` in the weight's own ``(c, r, s)`` column order.
        hessian_damp / col_block_size: ModelOpt's SparseGPT settings (its defaults).
    """
    k, c, r, s = weight.shape
    order = trt_column_order(c, r, s)
    flat = weight.detach().float().flatten(1)[:, order]
    h = hessian.float()[order][:, order].clone()
    # An input column that calibration never excited (a dead ReLU channel) has a zero diagonal, and
    # ModelOpt then zeroes its weights outright, so a group may lose 3 or 4: give it a tiny
    # curvature instead, which makes it the cheapest to prune and keeps the mask exactly 2:4.
    diag = torch.diagonal(h)
    dead = diag == 0
    if bool(dead.any()):
        live = diag[~dead]
        diag[dead] = 1e-6 * (float(live.mean()) if live.numel() else 1.0)
    config = {"pattern": "2:4 sparsity", "hessian_damp": hessian_damp, "col_block_size": col_block_size, "row_block_size": -1}
    keep = sparsegpt.create_sgpt_mask(flat, h, config).view(k, c * r * s)
    mask = torch.empty_like(keep)
    mask[:, order] = keep
    return mask.view(k, c, r, s).cpu().numpy()
