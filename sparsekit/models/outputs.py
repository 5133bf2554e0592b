"""Model outputs as named tensors, whatever container the model returns.

Hugging Face models return a ``ModelOutput`` (an ordered dict with attributes), others a tuple,
list, dict or dataclass. Every stage below the model layer (export, parity, benchmarks) wants a
flat list of ``(name, tensor)``: names come from keys and fields (``logits``,
``last_hidden_state``), positions become ``output``, ``output1``, ...; ``None`` entries (an
optional loss or cache that was not computed) are dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sparsekit.errors import ModelSourceError


def _items(out: Any) -> list[tuple[str | None, Any]]:
    if isinstance(out, dict):  # includes transformers' ModelOutput (an OrderedDict subclass)
        return [(str(k), v) for k, v in out.items()]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out)]
    if isinstance(out, (tuple, list)):
        return [(None, v) for v in out]
    raise ModelSourceError(f"the model returned a {type(out).__name__}, which is not a tensor or a container of tensors", "return a tensor, a tuple/list/dict of tensors, or a Hugging Face ModelOutput")


def flatten_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a model's output into ``[(name, tensor)]`` in a stable order.

    Args:
        out: a tensor, or a (nested) tuple / list / dict / dataclass / ModelOutput of tensors.
        prefix: name prefix for nested containers.

    Raises:
        ModelSourceError: something in the output is neither a tensor, a container nor None.
    """
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix or "output", out)]
    flat: list[tuple[str, Any]] = []
    for i, (key, value) in enumerate(_items(out)):
        if value is None:
            continue
        name = key if key is not None else ("output" if i == 0 else f"output{i}")
        flat += flatten_outputs(value, f"{prefix}.{name}" if prefix else name)
    return flat


def output_tensors(out: Any) -> list:
    """Just the tensors of :func:`flatten_outputs`, in order."""
    return [t for _, t in flatten_outputs(out)]
