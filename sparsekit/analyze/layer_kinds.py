"""Layer kinds: what a module is, whatever wrapper ModelOpt put around it."""

from __future__ import annotations

from torch import nn


def layer_kind(module: nn.Module) -> str:
    """``Linear``/``Conv2d``... also for ModelOpt's dynamic classes (``SparseLinear``, ``QuantConv2d``)."""
    name = type(module).__name__
    for prefix in ("Sparse", "Quant"):
        name = name.replace(prefix, "")
    return name


KNOWN_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
"""Layers the kit analyses and lists with a verdict (sparsified, or why not)."""


def known_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer of a :data:`KNOWN_KINDS` kind in ``model``, by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, KNOWN_KINDS)}
