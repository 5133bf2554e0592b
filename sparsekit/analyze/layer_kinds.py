"""Layer kinds: what a module is, whatever wrapper ModelOpt put around it."""

from __future__ import annotations

from torch import nn


def layer_kind(module: nn.Module) -> str:
    """``Linear``/``Conv2d``... also for ModelOpt's dynamic classes (``SparseLinear``, ``QuantConv2d``)."""
    name = type(module).__name__
    for prefix in ("Sparse", "Quant"):
        name = name.replace(prefix, "")
    return name
