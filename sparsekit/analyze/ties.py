"""Tied weights: one parameter shared by two modules (a language model's ``lm_head`` and its token
embedding). Found here (analysis); untying them is a model edit (:mod:`sparsekit.models.ties`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


@dataclass
class TiedWeight:
    """A sparsifiable layer whose weight is shared.

    Attributes:
        layer: the Linear/Conv2d module path.
        tied_to: the other parameter holding the same tensor (e.g. ``transformer.wte.weight``).
        extra_bytes: what untying adds: one more copy of the weight in fp32.
        action: ``kept dense`` or ``untied``.
    """

    layer: str
    tied_to: str
    extra_bytes: int
    action: str = "kept dense"

    def to_dict(self) -> dict:
        return asdict(self)


def tied_weights(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, TiedWeight]:
    """The ``layers`` (name -> module) whose ``weight`` parameter is also registered elsewhere in ``model``."""
    owners: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name)
    found = {}
    for name, module in layers.items():
        param = module._parameters.get("weight")
        others = [n for n in owners.get(id(param), []) if n != f"{name}.weight"] if param is not None else []
        if others:
            found[name] = TiedWeight(name, others[0], param.numel() * 4)
    return found
