"""Calibration settings shared by every stage that reads calibration data (sparsify's SparseGPT,
export's INT8 PTQ), declared once. Light on purpose: the CLI imports it to build its options."""

from __future__ import annotations

from pydantic import Field, PrivateAttr

from sparsekit.config import StrictConfig

DEFAULT_CALIB_SAMPLES = 128
"""Calibration samples when none are given (ModelOpt recommends 128-512 for INT8; SparseGPT's own default is 128)."""


class CalibrationSettings(StrictConfig):
    """Where calibration data comes from (one of ``calib`` and ``calib_text``, else random inputs)."""

    calib: str | None = Field(None, description="calibration data: .pt/.npy/.npz with [N, ...] samples, or module:function; default: random inputs", json_schema_extra={"metavar": "DATA"})
    calib_text: str | None = Field(None, description="calibrate on real text, one sample per line, tokenized by the tokenizer of the hf:DIR model folder (padded/truncated to the sequence length)", json_schema_extra={"metavar": "FILE"})
    calib_samples: int = Field(DEFAULT_CALIB_SAMPLES, ge=1, description="random calibration samples when no data is given, or lines of calib_text used")

    _given: list[tuple] | None = PrivateAttr(None)

    def with_batches(self, batches: list[tuple]):
        """A copy of these settings that calibrates on ``batches`` (made by a stage that reads a data
        source, ``--data`` / a recipe's ``data:``); they are not part of the settings' identity."""
        copy = self.model_copy()
        copy._given = list(batches)
        return copy

    def batches_for(self, loaded) -> list[tuple]:
        """The calibration batches of these settings for ``loaded`` (see :func:`sparsekit.models.calib.calibration_for`)."""
        from sparsekit.models.calib import calibration_for

        return calibration_for(loaded, self.calib, self.calib_text, self.calib_samples, given=self._given)
