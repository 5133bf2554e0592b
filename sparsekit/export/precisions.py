"""Typed ONNX variants, registered by name: fp32, fp16 (TensorRT 11 reads precision from the
ONNX) and int8 Q/DQ (ModelOpt PTQ on the sparse model). FP8 is a quantization of ``finetune
--quantize fp8`` only: no ONNX variant writes it yet.

Each variant is a PyTorch -> ONNX write (``write``) and, where the precision is not the
exporter's, a pass over the written ONNX (``convert``: fp16 weights and math, int8 weights
behind their DequantizeLinear). The pass works on the graph with its weights in an external-data
file and touches one weight at a time (see :mod:`sparsekit.export.external_data`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

from sparsekit.export.masked_weights import masks_folded_into_weights
from sparsekit.export.torch_to_onnx import onnx_from_torch
from sparsekit.input_spec import InputSpec
from sparsekit._memory import import_cleanly
from sparsekit.errors import SparsekitError
from sparsekit.export.external_data import EXTERNAL_MIN_BYTES
from sparsekit.export.fp16_weights import FP16_MAX, fp16_from_fp32
from sparsekit.export.int8_weights import int8_weights_from_qdq
from sparsekit.quantize.ptq import quantize_

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """One ONNX variant.

    Attributes:
        name: ``fp32``, ``fp16`` or ``int8`` (:data:`sparsekit.export.config.PRECISION_NAMES`).
        tolerance: max ``max_abs / max|ref|`` of ONNX Runtime against the reference.
        needs_calibration: whether the variant quantizes with calibration data.
        write: ``write(model, inputs, calib, path, opset, no_quant) -> (reference_model, reference_label)``
            writes the exporter's ONNX to ``path`` (``no_quant``: fnmatch patterns of layers a
            quantized variant keeps in float).
        convert: ``convert(model_proto, folder, location) -> model_proto``, the ONNX-side pass on
            the written model (its weights external in ``folder/location``), or None.
    """

    name: str
    tolerance: float
    needs_calibration: bool
    write: Callable[..., tuple[nn.Module, str]]
    convert: Callable | None = None


PRECISIONS: dict[str, Precision] = {}


def register(name: str, tolerance: float, needs_calibration: bool = False, convert: Callable | None = None):
    def wrap(fn):
        PRECISIONS[name] = Precision(name, tolerance, needs_calibration, fn, convert)
        return fn

    return wrap


def _fp16_pass(model, folder: Path, location: str):
    return fp16_from_fp32(model, folder, location)


def _int8_pass(model, folder: Path, location: str):
    return int8_weights_from_qdq(model, folder, location)


def _write_float(model: nn.Module, inputs: InputSpec, calib, path: Path, opset: int, no_quant: Sequence[str] = ()):
    """The fp32 export (2:4 masks folded into the weights while it runs)."""
    with masks_folded_into_weights(model):
        onnx_from_torch(model, inputs, path, opset)
    return model, "PyTorch model (fp32)"


register("fp32", tolerance=1e-4)(_write_float)
# fp32 export, then ModelOpt AutoCast on the graph: fp16 weights and math, fp32 inputs/outputs kept.
register("fp16", tolerance=2e-2, convert=_fp16_pass)(_write_float)


def copy_sharing_weights(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and 2:4 masks are the original's tensors.

    For post-training quantization, which adds and calibrates quantizers but writes no weight:
    the copy costs the module objects, not a second set of weights.
    """
    shared = list(model.parameters()) + [b for name, b in model.named_buffers() if name.endswith("_weight_mask")]
    return copy.deepcopy(model, {id(t): t for t in shared})


def float_weights_rounded_to_fp16_(model: nn.Module) -> int:
    """Give ``model``'s float weights that no enabled weight quantizer reads (2+ dimensions, at
    least 1 KiB, within the fp16 range: embeddings, a head kept in float) fp16-rounded values.

    The quantized file stores those weights in fp16 (:mod:`sparsekit.export.int8_weights`); the
    reference it is compared with then computes with the same values. Each rounded weight is a new
    tensor (tied uses share it): the originals, which a :func:`copy_sharing_weights` copy shares
    with the user's model, are untouched.

    Returns:
        How many weights were rounded.
    """
    import torch


    rounded: dict[int, nn.Parameter] = {}
    for module in model.modules():
        quantizer = getattr(module, "weight_quantizer", None)
        quantized = quantizer is not None and bool(getattr(quantizer, "is_enabled", False))
        for name, p in list(module._parameters.items()):
            if p is None or p.dim() < 2 or p.dtype != torch.float32 or p.numel() * 4 < EXTERNAL_MIN_BYTES or (quantized and name == "weight"):
                continue
            if id(p) not in rounded:
                with torch.no_grad():
                    fits = p.numel() == 0 or float(p.detach().abs().max()) <= FP16_MAX
                    rounded[id(p)] = nn.Parameter(p.detach().half().float(), requires_grad=p.requires_grad) if fits else p
            module._parameters[name] = rounded[id(p)]
    return sum(1 for key, p in rounded.items() if id(p) != key)


def _write_qdq(precision: str):
    def write(model: nn.Module, inputs: InputSpec, calib, path: Path, opset: int, no_quant: Sequence[str] = ()):
        import_cleanly("modelopt.torch")  # not on the export's stack (see import_cleanly)
        already = any(hasattr(m, "weight_quantizer") for m in model.modules())
        # A model that already holds quantizers (QAT) is exported as it is; otherwise PTQ on a copy.
        quantized = copy_sharing_weights(model) if already else quantize_(copy_sharing_weights(model), calib, precision, disable=no_quant)
        rounded = float_weights_rounded_to_fp16_(quantized)  # as the file stores them
        # the copy shares the model's masks: lift them on both, so neither holds them unpacked
        with masks_folded_into_weights(model), masks_folded_into_weights(quantized):
            onnx_from_torch(quantized, inputs, path, max(opset, 17 if precision == "int8" else 19))
        return quantized, f"PyTorch fake-quant model ({precision}{', float weights in fp16' if rounded else ''})"

    return write


# Q/DQ executed as written (see parity.ort_session) matches ModelOpt's fake quantization to float
# precision layer by layer, but rounding ties compound in deep models (see parity's docstring):
# an int8 ONNX passes when it matches to 1e-3 of the output scale, or when it is no further from
# PyTorch than sqrt(2) times the model's own INT8 rounding noise.
register("int8", tolerance=1e-3, needs_calibration=True, convert=_int8_pass)(_write_qdq("int8"))


def get_precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise SparsekitError(f"unknown precision '{name}'", f"use one of: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]
