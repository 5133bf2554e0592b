"""The model the pipeline works on: module, inputs, and how to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sparsekit.models.build import MEMORY
from sparsekit.input_spec import InputSpec


@dataclass
class LoadedModel:
    """A model ready for the pipeline.

    Attributes:
        model: the module, in eval mode; called as ``model(*tensors)`` in input order, it returns a
            tensor or a tuple of tensors (see :mod:`sparsekit.models.adapter`).
        inputs: its input spec (batch dimension first).
        source: how to rebuild it: ``{"kind", "spec", "args"}`` (JSON-serialisable; Hugging Face
            models add ``"hf"``: class name and config).
        checkpoint: metadata of the sparsekit checkpoint it came from, if any.
        notes: what the kit changed to make the model ordinary (Conv1D converted, inputs by keyword...).
    """

    model: nn.Module
    inputs: InputSpec
    source: dict[str, Any]
    checkpoint: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.source.get("spec"))

    @property
    def rebuildable(self) -> bool:
        """Whether a checkpoint of this model can rebuild its architecture."""
        return self.source.get("kind") != MEMORY
