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
  :class:`~sparsekit.models.low_rank.LowRankLinear` of that rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsekit.errors import ModelSourceError, SparsekitError
from sparsekit.models.low_rank import replace_with_low_rank_

SIZE_ATTRS = (
    "in_features", "out_features", "in_channels", "out_channels", "groups", "num_features",
    "normalized_shape", "num_embeddings", "embedding_dim",
    "heads", "num_heads", "num_attention_heads", "all_head_size", "attention_head_size",
)
"""Module attributes that describe sizes (PyTorch layers, the zoo's and Hugging Face's attention)."""
MAX_EDITS = 1024
"""Most architecture edits a checkpoint may record (each prune or factorise step adds one)."""


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


_DAMAGED = "re-create the checkpoint with 'sparsekit prune'; a recorded edit may only shrink the model it was made on"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shrunk(new: Any, old: Any, what: str) -> Any:
    """``new`` when it is a size no larger than ``old`` (an int, or a list of ints of the same length).

    Raises:
        ModelSourceError: a malformed, non-positive or growing size.
    """
    if _int(old) and _int(new) and 1 <= new <= old:
        return new
    if isinstance(old, (tuple, list)) and isinstance(new, list) and len(new) == len(old) and all(_int(n) and _int(o) and 1 <= n <= o for n, o in zip(new, old)):
        return new
    raise ModelSourceError(f"the checkpoint's edit sets {what} to {str(new)[:60]}, which is not a positive size no larger than the model's {str(old)[:60]}", _DAMAGED)


def _checked_resize(model: nn.Module, edit: dict) -> list[tuple[nn.Module, str, dict, dict]]:
    """``[(module, name, attrs, shapes)]`` of a resize edit, every value checked against the model
    before anything is allocated: known modules, known size attributes and tensors, same rank, and
    sizes that only shrink (so a file cannot make the kit allocate more than the source model has).

    Raises:
        ModelSourceError: an unknown module or tensor, a malformed or growing size.
    """
    modules = edit.get("modules")
    if not isinstance(modules, dict):
        raise ModelSourceError("the checkpoint records a resize edit without its modules", _DAMAGED)
    checked = []
    for name, change in modules.items():
        try:
            module = model.get_submodule(name) if name else model
        except (AttributeError, TypeError) as exc:
            raise ModelSourceError(f"the checkpoint resizes module '{str(name)[:80]}', which the rebuilt model lacks", "the model source changed since the checkpoint was written; prune again") from exc
        if not isinstance(change, dict) or not isinstance(change.get("attrs", {}), dict) or not isinstance(change.get("shapes", {}), dict):
            raise ModelSourceError(f"the checkpoint's resize of '{name}' is malformed", _DAMAGED)
        current = _size_attrs(module)
        attrs = {}
        for attr, value in change.get("attrs", {}).items():
            if attr not in current:
                raise ModelSourceError(f"the checkpoint sets '{str(attr)[:60]}' of '{name}', which is not one of its size attributes", _DAMAGED)
            attrs[attr] = _shrunk(value, current[attr], f"{name}.{attr}")
        shapes = {}
        for tensor, shape in change.get("shapes", {}).items():
            old = module._parameters.get(tensor) if tensor in module._parameters else module._buffers.get(tensor)
            if old is None:
                raise ModelSourceError(f"the checkpoint resizes '{name}.{str(tensor)[:60]}', which the rebuilt model lacks", "the model source changed since the checkpoint was written; prune again")
            shapes[tensor] = _shrunk(shape, list(old.shape), f"the shape of {name}.{tensor}")
        checked.append((module, name, attrs, shapes))
    return checked


def _resize_(model: nn.Module, edit: dict) -> None:
    for module, _name, attrs, shapes in _checked_resize(model, edit):
        for attr, value in attrs.items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        for tensor, shape in shapes.items():
            old = module._parameters.get(tensor)
            if old is not None:
                module._parameters[tensor] = nn.Parameter(torch.zeros(shape, dtype=old.dtype), requires_grad=old.requires_grad)
            else:
                module._buffers[tensor] = torch.zeros(shape, dtype=module._buffers[tensor].dtype)


def _checked_ranks(model: nn.Module, edit: dict) -> dict[str, int]:
    """The ranks of a low-rank edit, each a positive integer no larger than its Linear's smaller side.

    Raises:
        ModelSourceError: malformed layers, an unknown layer or a rank out of range.
    """
    layers = edit.get("layers")
    if not isinstance(layers, dict):
        raise ModelSourceError("the checkpoint records a low-rank edit without its layers", _DAMAGED)
    ranks = {}
    for name, rank in layers.items():
        try:
            layer = model.get_submodule(name)
        except (AttributeError, TypeError):
            layer = None
        limit = min(layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else None
        if limit is not None and not (_int(rank) and 1 <= rank <= limit):
            raise ModelSourceError(f"the checkpoint factorises '{name}' at rank {str(rank)[:40]}, not an integer in [1, {limit}]", _DAMAGED)
        ranks[name] = rank
    return ranks


def apply_edits_(model: nn.Module, edits: list[dict]) -> nn.Module:
    """Redo recorded architecture edits on a freshly built model, in order (weights are not set).

    Raises:
        ModelSourceError: an edit names a module or tensor the model does not have, or is of an
            unknown kind (a checkpoint from a newer sparsekit).
    """
    if len(edits) > MAX_EDITS:
        raise ModelSourceError(f"the checkpoint records {len(edits):,} architecture edits (at most {MAX_EDITS} are read)", _DAMAGED)
    for edit in edits:
        kind = edit.get("kind") if isinstance(edit, dict) else None
        if kind == "resize":
            _resize_(model, edit)
        elif kind == "low_rank":
            replace_with_low_rank_(model, _checked_ranks(model, edit))
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
    for name, module in model.named_modules():
        if getattr(module, "_weight_mask", None) is not None or hasattr(module, "weight_quantizer"):
            kind = "quantized" if hasattr(module, "weight_quantizer") else "2:4-sparsified"
            raise SparsekitError(f"{what} needs a dense model, and layer '{name}' is already {kind}", "prune the dense model first, then sparsify (and quantize) the pruned one")
