"""FLOP counts of a PyTorch model: per Linear/Conv layer from forward hooks, and the model total
from torch's counter, both as :mod:`sparsekit.analyze.flop_count` defines them."""

from __future__ import annotations

from torch import nn

from sparsekit.analyze.flop_count import attention_flops, matmul_flops, product, total_flops
from sparsekit.analyze.layer_kinds import KNOWN_KINDS


def _attention_flop_tally():
    """A torch-function mode that adds up the FLOPs of ``F.scaled_dot_product_attention`` calls.

    torch's FlopCounterMode counts the fused attention ops of CUDA but not the CPU one that
    SDPA dispatches to, so on CPU attention would vanish from the total (and the Amdahl bound
    would rise to 2.0x). Counted by :func:`~sparsekit.analyze.flop_count.attention_flops`, whether
    ``query``/``key``/``value`` come by position or by keyword, and whatever the mask or causality.
    Eager attention (``torch.matmul`` of scores) is counted by FlopCounterMode itself.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class Tally(TorchFunctionMode):
        flops = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.nn.functional.scaled_dot_product_attention:
                named = dict(zip(("query", "key", "value"), args))
                named.update({k: kwargs[k] for k in ("query", "key", "value") if k in kwargs})
                q, k, v = named["query"], named["key"], named["value"]
                self.flops += attention_flops(q.numel(), q.numel() // q.shape[-1] * v.shape[-1], k.shape[-2])
            return func(*args, **kwargs)

    return Tally()


def layer_flops(model: nn.Module, inputs: tuple) -> tuple[dict[str, int], dict[str, int], int]:
    """FLOPs of every Linear/Conv layer, and of the whole model, as
    :mod:`sparsekit.analyze.flop_count` defines them (2 per multiply-add, every call counted).

    Args:
        model: the module (run once under ``torch.no_grad``), on any device.
        inputs: one batch of inputs; moved to the device (and float dtype) of the model's first parameter.

    Returns:
        ``(flops_by_layer, gemm_rows_by_layer, total_flops)``. ``gemm_rows`` is the M dimension
        of the layer's GEMM (tokens or output pixels x batch). ``total_flops`` counts every
        matmul/conv/attention op (torch's FlopCounterMode, plus CPU attention), so layers without
        weights (attention score products) count as work that cannot run sparse.
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
                f = matmul_flops(output.numel(), module.in_features)
            elif isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input pixel scatters into a k-window
                f = matmul_flops(args[0].numel(), module.out_channels // module.groups * product(module.kernel_size))
            else:
                f = matmul_flops(output.numel(), module.in_channels // module.groups * product(module.kernel_size))
            flops[name] = flops.get(name, 0) + f
            rows[name] = m

        return hook

    param = next(model.parameters(), None)
    if param is not None:  # a GPU or half-precision model: its inputs follow it
        inputs = tuple(t.to(param.device, param.dtype if t.is_floating_point() else t.dtype) for t in inputs)
    for name, module in model.named_modules():
        if isinstance(module, KNOWN_KINDS):
            hooks.append(module.register_forward_hook(make_hook(name)))
    try:
        counter = FlopCounterMode(display=False)
        attention = _attention_flop_tally()
        with torch.no_grad(), attention, counter:
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    counted = counter.get_flop_counts().get("Global", {})
    fused_counted = any("attention" in str(op) for op in counted)
    total = total_flops([*counted.values(), 0 if fused_counted else attention.flops]) or 0
    total = max(total, sum(flops.values()))
    return flops, rows, total
