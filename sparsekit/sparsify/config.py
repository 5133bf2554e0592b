"""The settings of the sparsify stage, declared once: the input of
:func:`sparsekit.sparsify.sparsify.sparsify_loaded_`, the options of ``sparsekit sparsify`` and the
``sparsify:`` section of a recipe. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsekit.models.calib_settings import CalibrationSettings
from sparsekit.sparsify.methods import METHODS

MethodName = Literal[tuple(METHODS)]
"""A registered 2:4 method (:data:`sparsekit.sparsify.methods.METHODS`)."""


class SparsifyConfig(CalibrationSettings):
    """2:4 sparsification through ModelOpt (calibration settings are used by ``sparsegpt``, or when given)."""

    method: MethodName = Field("magnitude", description="magnitude (no data) or sparsegpt (calibrated, Hessian-based)")
    include: list[str] = Field(default_factory=lambda: ["*"], description="fnmatch pattern of layer names to sparsify (repeatable)")
    exclude: list[str] = Field(default_factory=list, description="fnmatch pattern of layer names to keep dense (repeatable), e.g. '*head*'")
    include_from: str | None = Field(None, description="layers to sparsify from a file: the JSON of 'sparsekit select' (its include list) or one name/pattern per line", json_schema_extra={"metavar": "FILE"})
    exclude_from: str | None = Field(None, description="layers to keep dense from a file: a JSON with an 'exclude' list (e.g. from sensitivity analysis) or one name/pattern per line", json_schema_extra={"metavar": "FILE"})
    permute: bool = Field(False, description="first search channel permutations (producer outputs and consumer inputs reordered together: the dense function is unchanged) so that 2:4 keeps more weight magnitude; reported per layer")
    permute_sweeps: int = Field(100, ge=0, description="permutation search sweeps per layer (more keeps a little more, slower)")
    untie_tied: bool = Field(False, description="also sparsify layers whose weight is tied to another parameter (a language model's head and its token embedding): each gets its own 2:4 copy, which adds its size (stated in the report)")
    conv_masks: Literal["sparsegpt", "magnitude"] = Field("sparsegpt", description="with method sparsegpt, how k x k convs get their masks: TensorRT-layout SparseGPT, or TensorRT-layout magnitude (for comparison)")

    @property
    def needs_calibration(self) -> bool:
        """Whether calibration batches are read (sparsegpt, or data given explicitly)."""
        return self.method == "sparsegpt" or bool(self.calib or self.calib_text)
