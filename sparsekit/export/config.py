"""The settings of the export stage, declared once: the input of
:func:`sparsekit.export.export.export_all_`, the options of ``sparsekit export`` and the ``export:``
section of a recipe. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sparsekit.models.calib_settings import CalibrationSettings

PRECISION_NAMES = ("fp32", "fp16", "int8")
"""The registered ONNX variants (:data:`sparsekit.export.precisions.PRECISIONS`, which a test keeps equal)."""
DEFAULT_OPSET = 17

PrecisionName = Literal[PRECISION_NAMES]


class ExportConfig(CalibrationSettings):
    """Typed ONNX variants, each verified (2:4 on TensorRT's axis + ONNX Runtime parity); the
    calibration settings feed int8."""

    precisions: list[PrecisionName] = Field(default_factory=lambda: ["fp16"], description="ONNX variant(s) to write, each verified (repeatable)", json_schema_extra={"flags": ["--precision"], "metavar": "|".join(PRECISION_NAMES)})
    opset: int = Field(DEFAULT_OPSET, ge=13, le=23, description="ONNX opset (raised where a variant needs more)")
    no_quant: list[str] = Field(default_factory=list, description="int8: keep layers matching PATTERN in float (repeatable), e.g. a layer ModelOpt's quantizer cannot handle")
    external_data: bool = Field(False, description="write the weights to <file>.onnx.data next to each ONNX (ONNX's external-data layout); automatic past the 2 GiB one ONNX file can hold")

    @field_validator("precisions", mode="before")
    @classmethod
    def _expand(cls, v):
        """``all`` means every registered variant; repeats are dropped (order kept)."""
        if isinstance(v, list):
            v = [p for x in v for p in (PRECISION_NAMES if x == "all" else (x,))]
            v = list(dict.fromkeys(v))
        if not v:
            raise ValueError("precisions must name at least one variant")
        return v
