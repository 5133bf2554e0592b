"""Architecture edits (pruned widths, factorised layers) as data, replayed when a checkpoint loads.

A checkpoint rebuilds its model from the source (zoo entry, factory, Hugging Face config) and then
loads the weights. A pruned or factorised model no longer has the source's shapes, so each such
change is recorded in ``loaded.source["edits"]`` as plain data (module names, sizes, shapes; no
code, no pickled objects) and :func:`apply_edits_` redoes it on the fresh model before its weights
are loaded. Each edit is ``{"kind": "resize" | "low_rank", ...}``:

- ``resize``: ``{"modules": {name: {"attrs": {attr: value}, "shapes": {tensor: [dims]}}}}``: the size
  attributes and parameter/buffer shapes of every module whose shapes changed (values come from
  the weights loaded afterwards);
- ``low_rank``: ``{"layers": {name: rank}}``: ``nn.Linear`` layers replaced by
  :class:`~sparsekit.prune.lowrank.LowRankLinear` of that rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsekit.errors import ModelSourceError

SIZE_ATTRS = (
    "in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
    "normalized_shape", "num_embeddings", "embedding_dim",
    "heads", "num_heads", "num_attention_heads", "all_head_size", "attention_head_size",
)
"""Module attributes that describe sizes (PyTorch layers, the zoo's and Hugging Face's attention)."""


def _size_attrs(module: nn.Module) -> dict[str, Any]:
    out = {}
    for attr in SIZE_ATTRS:
        value = module.__dict__.get(attr)
        if isinstance(value, bool) or not isinstance(value, (int, tuple)):
            continue
        out[attr] = list(value) if isinstance(value, tuple) else value
    return out


def snapshot_sizes(model: nn.Module) -> dict[str, dict]:
    """``{module name: {"attrs": size attributes, "shapes": {tensor name: shape}}}`` of every module."""
    snap = {}
    for name, module in model.named_modules():
        tensors = {**module._parameters, **module._buffers}
        snap[name] = {"attrs": _size_attrs(module), "shapes": {k: list(v.shape) for k, v in tensors.items() if v is not None}}
    return snap


def resize_edit(before: dict[str, dict], model: nn.Module) -> dict | None:
    """The ``resize`` edit that turns a model with sizes ``before`` (:func:`snapshot_sizes`) into ``model``;
    None when nothing changed."""
    after = snapshot_sizes(model)
    changed = {}
    for name, now in after.items():
        was = before.get(name)
        if was is None:
            raise ModelSourceError(f"module '{name}' appeared while pruning", "report this model: pruning must only shrink existing layers")
        attrs = {k: v for k, v in now["attrs"].items() if was["attrs"].get(k) != v}
        shapes = {k: v for k, v in now["shapes"].items() if was["shapes"].get(k) != v}
        if attrs or shapes:
            changed[name] = {"attrs": attrs, "shapes": shapes}
    return {"kind": "resize", "modules": changed} if changed else None


def _resize_(model: nn.Module, edit: dict) -> None:
    for name, change in edit["modules"].items():
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError as exc:
            raise ModelSourceError(f"the checkpoint resizes module '{name}', which the rebuilt model lacks", "the model source changed since the checkpoint was written; prune again") from exc
        for attr, value in change["attrs"].items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        for tensor, shape in change["shapes"].items():
            old = module._parameters.get(tensor)
            if old is not None:
                module._parameters[tensor] = nn.Parameter(torch.zeros(shape, dtype=old.dtype), requires_grad=old.requires_grad)
            elif module._buffers.get(tensor) is not None:
                module._buffers[tensor] = torch.zeros(shape, dtype=module._buffers[tensor].dtype)
            else:
                raise ModelSourceError(f"the checkpoint resizes '{name}.{tensor}', which the rebuilt model lacks", "the model source changed since the checkpoint was written; prune again")


def apply_edits_(model: nn.Module, edits: list[dict]) -> nn.Module:
    """Redo recorded architecture edits on a freshly built model, in order (weights are not set).

    Raises:
        ModelSourceError: an edit names a module or tensor the model does not have, or is of an
            unknown kind (a checkpoint from a newer sparsekit).
    """
    from sparsekit.prune.lowrank import replace_with_low_rank_

    for edit in edits:
        kind = edit.get("kind") if isinstance(edit, dict) else None
        if kind == "resize":
            _resize_(model, edit)
        elif kind == "low_rank":
            replace_with_low_rank_(model, {k: int(v) for k, v in edit["layers"].items()})
        else:
            raise ModelSourceError(f"the checkpoint records an architecture edit of unknown kind {kind!r}", "load it with the sparsekit version that wrote it")
    return model


def record_edit(loaded, edit: dict | None) -> None:
    """Append ``edit`` to ``loaded.source["edits"]`` (a copy: the source dict may be shared)."""
    if edit is not None:
        loaded.source = {**loaded.source, "edits": [*loaded.source.get("edits", []), edit]}


def refuse_converted(model: nn.Module, what: str) -> None:
    """Raise when ``model`` already holds 2:4 masks or quantizers: coarse pruning comes first.

    Raises:
        SparsekitError: one line naming the order that works.
    """
    from sparsekit.errors import SparsekitError

    for name, module in model.named_modules():
        if getattr(module, "_weight_mask", None) is not None or hasattr(module, "weight_quantizer"):
            kind = "quantized" if hasattr(module, "weight_quantizer") else "2:4-sparsified"
            raise SparsekitError(f"{what} needs a dense model, and layer '{name}' is already {kind}", "prune the dense model first, then sparsify (and quantize) the pruned one")
