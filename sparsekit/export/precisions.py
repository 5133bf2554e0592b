"""Typed ONNX variants, registered by name: fp32, fp16 (TensorRT 11 reads precision from the
ONNX), int8 Q/DQ and fp8 Q/DQ (ModelOpt PTQ on the sparse model)."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from sparsekit.export.torch_to_onnx import onnx_from_torch
from sparsekit.models.spec import InputSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """One ONNX variant.

    Attributes:
        name: ``fp32``, ``fp16``, ``int8`` or ``fp8``.
        tolerance: max ``max_abs / max|ref|`` of ONNX Runtime against the reference.
        needs_calibration: whether the variant quantizes with calibration data.
        write: ``write(model, inputs, calib, path, opset) -> (reference_model, reference_label)``.
    """

    name: str
    tolerance: float
    needs_calibration: bool
    write: Callable[..., tuple[nn.Module, str]]


PRECISIONS: dict[str, Precision] = {}


def register(name: str, tolerance: float, needs_calibration: bool = False):
    def wrap(fn):
        PRECISIONS[name] = Precision(name, tolerance, needs_calibration, fn)
        return fn

    return wrap


@register("fp32", tolerance=1e-4)
def _write_fp32(model: nn.Module, inputs: InputSpec, calib, path: Path, opset: int):
    onnx_from_torch(model, inputs, path, opset)
    return model, "PyTorch model (fp32)"


@register("fp16", tolerance=2e-2)
def _write_fp16(model: nn.Module, inputs: InputSpec, calib, path: Path, opset: int):
    """fp32 export, then ModelOpt AutoCast: fp16 weights and math, fp32 inputs/outputs kept."""
    import onnx

    from sparsekit._quiet import quiet_modelopt

    from sparsekit._memory import release_memory

    fp32 = path.with_name(path.name + ".fp32.tmp")
    try:
        onnx_from_torch(model, inputs, fp32, opset)
        release_memory()
        with quiet_modelopt():
            from modelopt.onnx.autocast import convert_to_mixed_precision

            converted = convert_to_mixed_precision(onnx_path=str(fp32), low_precision_type="fp16", keep_io_types=True)
        onnx.save(converted, str(path))
    finally:
        if fp32.exists():
            os.unlink(fp32)
    return model, "PyTorch model (fp32)"


def _write_qdq(precision: str):
    def write(model: nn.Module, inputs: InputSpec, calib, path: Path, opset: int):
        from sparsekit.quantize.ptq import quantize_

        already = any(hasattr(m, "weight_quantizer") for m in model.modules())
        # A model that already holds quantizers (QAT) is exported as it is; otherwise PTQ on a copy.
        quantized = model if already else quantize_(copy.deepcopy(model), calib, precision)
        onnx_from_torch(quantized, inputs, path, max(opset, 17 if precision == "int8" else 19))
        return quantized, f"PyTorch fake-quant model ({precision})"

    return write


# Q/DQ executed as written (see parity.ort_session) matches ModelOpt's fake quantization to float
# precision layer by layer, but rounding ties compound in deep models (see parity's docstring):
# an int8 ONNX passes when it matches to 1e-3 of the output scale, or when it is no further from
# PyTorch than sqrt(2) times the model's own INT8 rounding noise.
register("int8", tolerance=1e-3, needs_calibration=True)(_write_qdq("int8"))


def get_precision(name: str) -> Precision:
    from sparsekit.errors import SparsekitError

    if name not in PRECISIONS:
        raise SparsekitError(f"unknown precision '{name}'", f"use one of: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]
