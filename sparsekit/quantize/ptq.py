"""INT8 / FP8 post-training quantization on top of 2:4 sparsity, in the order that keeps 2:4.

The chain is sparsify -> quantize -> (QAT) -> ONNX, WITHOUT ``mts.export`` in between: the
sparsity masks stay enforced through quantization and training, and the exported weights keep
2:4 behind their Q/DQ pairs. (``mts.export`` before quantization is fine for PTQ but QAT then
destroys the pattern.)
"""

from __future__ import annotations

import logging
from typing import Sequence

from torch import nn

from sparsekit._quiet import quiet_modelopt
from sparsekit.errors import CalibrationDataError, SparsekitError

log = logging.getLogger(__name__)

QUANT_CONFIGS = {"int8": "INT8_DEFAULT_CFG", "fp8": "FP8_DEFAULT_CFG"}


def quantize_(model: nn.Module, calib: Sequence[tuple], precision: str = "int8", disable: Sequence[str] = ()) -> nn.Module:
    """Insert ModelOpt fake-quantizers into ``model`` (in place) and calibrate them (max).

    Args:
        model: a dense or ModelOpt-sparsified model (do NOT call ``mts.export`` on it first).
        calib: calibration batches (tuples of input tensors); 128-512 samples is typical.
        precision: ``int8`` (per-channel weights, per-tensor activations) or ``fp8``.
        disable: fnmatch patterns of module names whose quantizers stay off (kept in float).

    Returns:
        The quantized model (ModelOpt may return a new object).

    Raises:
        CalibrationDataError: no calibration data.
    """
    import modelopt.torch.quantization as mtq

    from sparsekit.models.calib import forward_loop

    if precision not in QUANT_CONFIGS:
        raise SparsekitError(f"unknown quantization precision '{precision}'", f"use one of: {', '.join(QUANT_CONFIGS)}")
    if not calib:
        raise CalibrationDataError("quantization needs calibration data and none was given", "pass --calib, or let the kit use the model's random inputs")
    config = getattr(mtq, QUANT_CONFIGS[precision])
    with quiet_modelopt():
        model = mtq.quantize(model, config, forward_loop(calib))
        for pattern in disable:
            mtq.disable_quantizer(model, f"*{pattern}*")
    return model
