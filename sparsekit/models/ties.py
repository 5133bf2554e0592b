"""Tied weights: one parameter shared by two modules (a language model's ``lm_head`` and its token
embedding). A 2:4 mask on one of them would make the two compute with different values, so the
model (and its ONNX) would carry two copies where it had one. The kit keeps such layers dense by
default and unties them only when asked, stating the size cost.
"""

from __future__ import annotations

import logging

from torch import nn

from sparsekit.analyze.ties import tied_weights

log = logging.getLogger(__name__)


def untie_(module: nn.Module) -> None:
    """Give ``module`` its own copy of its weight (same values), in place."""
    import torch

    with torch.no_grad():
        module.weight = nn.Parameter(module._parameters["weight"].detach().clone(), requires_grad=module._parameters["weight"].requires_grad)


def untie_like_(model: nn.Module, state_dict: dict) -> list[str]:
    """Untie the layers of a freshly built ``model`` whose weights ``state_dict`` stores separately.

    A checkpoint of a model whose ``lm_head`` was untied (and sparsified) holds two different
    tensors; the fresh model ties them again, so loading would overwrite one with the other.

    Returns:
        The layers untied.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m._parameters.get("weight"), nn.Parameter)}
    untied, done = [], set()
    for name, tie in tied_weights(model, layers).items():
        if tie.tied_to in done:  # the other member of this pair was untied already
            continue
        mine, theirs = state_dict.get(f"{name}.weight"), state_dict.get(tie.tied_to)
        if mine is not None and theirs is not None and mine.data_ptr() != theirs.data_ptr():
            untie_(layers[name])
            untied.append(name)
            done.add(f"{name}.weight")
    if untied:
        log.info("untied %s as stored in the checkpoint", ", ".join(untied))
    return untied
