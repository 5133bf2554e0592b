"""The low-rank layer a factorised checkpoint rebuilds: ``nn.Linear`` replaced by two thinner ones.

Here (with the models) because restoring a checkpoint replays factorisations
(:mod:`sparsekit.models.structure`); how a rank is chosen and the SVD that fills the factors are
pruning (:mod:`sparsekit.prune.lowrank`).
"""

from __future__ import annotations

import torch
from torch import nn
from sparsekit.errors import ModelSourceError


class LowRankLinear(nn.Module):
    """``x [..., in] -> up(down(x)) [..., out]``; ``down`` has no bias, ``up`` carries the original bias."""

    def __init__(self, in_features: int, rank: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)
        self.in_features, self.out_features, self.rank = in_features, out_features, rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def replace_with_low_rank_(model: nn.Module, ranks: dict[str, int]) -> None:
    """Swap each named ``nn.Linear`` for a :class:`LowRankLinear` of the given rank (weights unset)."""
    for name, rank in ranks.items():
        parent_name, _, leaf = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name) if parent_name else model
            layer = getattr(parent, leaf)
        except AttributeError as exc:
            raise ModelSourceError(f"the checkpoint factorises layer '{name}', which the model lacks", "the model source changed since the checkpoint was written; factorise again") from exc
        if not isinstance(layer, nn.Linear):
            raise ModelSourceError(f"the checkpoint factorises '{name}', which is a {type(layer).__name__}, not a Linear", "the model source changed since the checkpoint was written; factorise again")
        setattr(parent, leaf, LowRankLinear(layer.in_features, rank, layer.out_features, layer.bias is not None).to(layer.weight.dtype))
