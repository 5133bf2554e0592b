"""The settings of quantization before training (QAT), declared once: part of
:class:`sparsekit.recover.config.FinetuneConfig`, the options of ``sparsekit finetune`` and the
``finetune:`` section of a recipe. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsekit.config import StrictConfig

QUANT_PRECISIONS = ("int8", "fp8")
"""Fake-quantization formats (ModelOpt's INT8_DEFAULT_CFG / FP8_DEFAULT_CFG)."""
CALIB_METHODS = ("max", "entropy", "percentile", "mse")
"""Activation calibration methods."""


class QuantizeConfig(StrictConfig):
    """Quantize first (sparsify -> quantize -> train keeps 2:4 into the ONNX), then train: QAT."""

    quantize: Literal[QUANT_PRECISIONS] | None = Field(None, description="quantize first, then train (QAT); the export must then be of that precision")
    calib_method: Literal[CALIB_METHODS] = Field("max", description="activation calibration of quantize (fp8 takes max or percentile)")
    calib_samples: int = Field(256, ge=1, description="calibration samples of quantize (from the task)")
    no_quant: list[str] = Field(default_factory=list, description="keep layers matching PATTERN unquantized (repeatable)")
