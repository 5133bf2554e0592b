"""FLOP counts: per Linear/Conv layer from forward hooks, and the model total from torch's counter."""

from __future__ import annotations

from torch import nn

from sparsekit.analyze.layer_kinds import KNOWN_KINDS


def _attention_flop_tally():
    """A torch-function mode that adds up the FLOPs of ``F.scaled_dot_product_attention`` calls.

    torch's FlopCounterMode counts the fused attention ops of CUDA but not the CPU one that
    SDPA dispatches to, so on CPU attention would vanish from the total (and the Amdahl bound
    would rise to 2.0x). Two matmuls of ``[.., Sq, D] x [.., D, Sk]`` and ``[.., Sq, Sk] x [.., Sk, Dv]``,
    whether ``query``/``key``/``value`` come by position or by keyword, and whatever the mask or
    causality (a causal kernel may skip half the scores; the dense count is what a 2:4 GEMM
    speedup cannot touch, so it is kept). Eager attention (``torch.matmul`` of scores) is counted by
    FlopCounterMode itself.
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
                batch_heads = q.numel() // (q.shape[-2] * q.shape[-1])
                self.flops += 2 * batch_heads * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
            return func(*args, **kwargs)

    return Tally()


def layer_flops(model: nn.Module, inputs: tuple) -> tuple[dict[str, int], dict[str, int], int]:
    """Multiply-add FLOPs (2 per MAC) of every Linear/Conv layer, and of the whole model.

    Args:
        model: the module (run once under ``torch.no_grad``), on any device.
        inputs: one batch of inputs; moved to the device (and float dtype) of the model's first parameter.

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
            elif isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input pixel scatters into a k-window
                k = 1
                for d in module.kernel_size:
                    k *= d
                macs = args[0].numel() * (module.out_channels // module.groups) * k
            else:
                k = 1
                for d in module.kernel_size:
                    k *= d
                macs = (module.in_channels // module.groups) * k * output.numel()
            flops[name] = flops.get(name, 0) + 2 * macs
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
    total = max(int(counter.get_total_flops()) + (0 if fused_counted else attention.flops), sum(flops.values()))
    return flops, rows, total
