"""PyTorch -> ONNX with a dynamic batch axis on every input and output."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

from torch import nn

from sparsekit.errors import ExportError
from sparsekit.models.spec import InputSpec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def output_names(model: nn.Module, inputs: InputSpec) -> list[str]:
    """``output`` for a single-tensor output, ``output0..N`` for a tuple."""
    import torch

    with torch.no_grad():
        out = model(*inputs.random(seed=0))
    n = len(out) if isinstance(out, (tuple, list)) else 1
    return ["output"] if n == 1 else [f"output{i}" for i in range(n)]


def onnx_from_torch(model: nn.Module, inputs: InputSpec, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> None:
    """Export ``model`` to ``path`` with TorchScript-based ``torch.onnx.export(dynamo=False)``.

    The TorchScript path is the one that turns ModelOpt fake-quant modules into
    QuantizeLinear/DequantizeLinear pairs; it names nodes after module scopes
    (``/layers.0/ffn_in/Gemm``), which the 2:4 post-check uses to map ONNX layers back to modules.
    Axis 0 of every input and output is dynamic (``batch``).

    Raises:
        ExportError: the exporter failed.
    """
    import torch

    names = output_names(model, inputs)
    dynamic = {n: {0: "batch"} for n in [*inputs.names, *names]}
    sink = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, inputs.random(seed=0), str(path), dynamo=False, opset_version=opset,
                input_names=inputs.names, output_names=names, dynamic_axes=dynamic, do_constant_folding=True,
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX export failed: {first}", "run with --debug for the exporter's traceback; unsupported ops may need a newer opset (--opset)") from exc
    for line in sink.getvalue().splitlines():
        log.debug("exporter: %s", line)
