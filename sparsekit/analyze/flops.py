"""FLOP counts: per Linear/Conv layer from forward hooks, and the model total from torch's counter."""

from __future__ import annotations

from torch import nn

_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_flops(model: nn.Module, inputs: tuple) -> tuple[dict[str, int], dict[str, int], int]:
    """Multiply-add FLOPs (2 per MAC) of every Linear/Conv layer, and of the whole model.

    Args:
        model: the module (run once under ``torch.no_grad``).
        inputs: one batch of inputs.

    Returns:
        ``(flops_by_layer, gemm_rows_by_layer, total_flops)``. ``gemm_rows`` is the M dimension
        of the layer's GEMM (tokens or output pixels x batch). ``total_flops`` counts every
        matmul/conv/attention op (torch's FlopCounterMode), so layers without weights (attention
        score products) count as work that cannot run sparse.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flops: dict[str, int] = {}
    rows: dict[str, int] = {}
    hooks = []

    def make_hook(name: str):
        def hook(module, args, output):
            out_ch = output.shape[1] if isinstance(module, nn.modules.conv._ConvNd) else output.shape[-1]
            m = output.numel() // out_ch
            if isinstance(module, nn.Linear):
                macs = module.in_features * output.numel()
            else:
                k = 1
                for d in module.kernel_size:
                    k *= d
                macs = (module.in_channels // module.groups) * k * output.numel()
            flops[name] = flops.get(name, 0) + 2 * macs
            rows[name] = m

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES):
            hooks.append(module.register_forward_hook(make_hook(name)))
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    total = max(int(counter.get_total_flops()), sum(flops.values()))
    return flops, rows, total
