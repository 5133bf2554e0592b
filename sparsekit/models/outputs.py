"""Model outputs as named tensors, whatever container the model returns.

Hugging Face models return a ``ModelOutput`` (an ordered dict with attributes), others a tuple,
list, dict or dataclass. Every stage below the model layer (export, parity, benchmarks) wants a
flat list of ``(name, tensor)``: names come from keys and fields (``logits``,
``last_hidden_state``), positions become ``output``, ``output1``, ...; nested containers join
their names with ``.`` (``hidden_states.output1``); ``None`` entries (an optional loss or cache
that was not computed) are dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sparsekit.errors import ModelSourceError


def _items(out: Any, where: str) -> list[tuple[str | None, Any]]:
    if isinstance(out, dict):  # includes transformers' ModelOutput (an OrderedDict subclass)
        return [(str(k), v) for k, v in out.items()]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out)]
    if isinstance(out, (tuple, list)):
        return [(None, v) for v in out]
    label = f"output '{where}'" if where else "output"
    raise ModelSourceError(
        f"the model's {label} is a {type(out).__name__}, which is not a tensor or a container of tensors",
        "return tensors (or a tuple/list/dict/dataclass/ModelOutput of them); for a Hugging Face model turn caches off (use_cache=False)",
    )


def flatten_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a model's output into ``[(name, tensor)]`` in a stable order.

    Args:
        out: a tensor, or a (nested) tuple / list / dict / dataclass / ModelOutput of tensors.
        prefix: name prefix for nested containers.

    Raises:
        ModelSourceError: something in the output is neither a tensor, a container nor None,
            or the output holds no tensor at all.
    """
    flat = _flatten(out, prefix)
    if not flat and not prefix:
        raise ModelSourceError(f"the model returned no tensor (only {type(out).__name__} without tensors)", "return at least one output tensor")
    return flat


def _flatten(out: Any, prefix: str) -> list[tuple[str, Any]]:
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix or "output", out)]
    flat: list[tuple[str, Any]] = []
    for i, (key, value) in enumerate(_items(out, prefix)):
        if value is None:
            continue
        name = key if key is not None else ("output" if i == 0 else f"output{i}")
        flat += _flatten(value, f"{prefix}.{name}" if prefix else name)
    return flat


def output_tensors(out: Any) -> list:
    """Just the tensors of :func:`flatten_outputs`, in order."""
    return [t for _, t in flatten_outputs(out)]


def is_plain(out: Any) -> bool:
    """A tensor, or a flat tuple/list of tensors: what every stage can use as it is."""
    import torch

    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and len(out) > 0 and all(isinstance(t, torch.Tensor) for t in out)
