"""Layer kinds: what a module is, whatever wrapper ModelOpt put around it.

torch is imported on first use, not with this module: checking an ONNX file (which reads layer
kinds by name) needs no torch.
"""

from __future__ import annotations

from sparsekit._lazy import lazy_import

nn = lazy_import("torch.nn")


def layer_kind(module) -> str:
    """``Linear``/``Conv2d``... also for ModelOpt's dynamic classes (``SparseLinear``, ``QuantConv2d``)."""
    name = type(module).__name__
    for prefix in ("Sparse", "Quant"):
        name = name.replace(prefix, "")
    return name


def known_kinds() -> tuple:
    """Layers the kit analyses and lists with a verdict (sparsified, or why not)."""
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def __getattr__(name: str):
    if name == "KNOWN_KINDS":  # the tuple of :func:`known_kinds`, built when first asked for
        return known_kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def known_layers(model) -> dict:
    """Every layer of a :func:`known_kinds` kind in ``model``, by module path."""
    kinds = known_kinds()
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}
