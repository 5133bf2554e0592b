"""PyTorch -> ONNX with named outputs and dynamic axes: the batch on every input and output, and
every other dynamic input axis (a text model's sequence) wherever the outputs follow it."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from typing import Iterator

from torch import nn

from sparsekit._io import is_disk_full
from sparsekit.errors import ExportError, InputShapeError
from sparsekit.export.config import DEFAULT_OPSET
from sparsekit.input_spec import BATCH, InputSpec
from sparsekit.export.shared_weights import share_transposed_copies, tied_dense_layers
from sparsekit.models.adapter import output_names as names_of

log = logging.getLogger(__name__)


def output_names(model: nn.Module, inputs: InputSpec) -> list[str]:
    """The model's output names (``logits``, ``last_hidden_state``...; ``output``, ``output1``... for
    unnamed outputs), unique and distinct from the input names."""
    names, seen = [], set(inputs.names)
    for name in names_of(model, inputs):
        unique, i = name, 1
        while unique in seen:
            unique, i = f"{name}_{i}", i + 1
        seen.add(unique)
        names.append(unique)
    return names


def _output_shapes(model: nn.Module, tensors) -> list[tuple[int, ...]]:
    import torch

    with torch.no_grad():
        out = model(*tensors)
    return [tuple(t.shape) for t in (out if isinstance(out, (tuple, list)) else (out,))]


def output_axes(model: nn.Module, inputs: InputSpec, names: list[str]) -> dict[str, dict[int, str]]:
    """Dynamic axes of each output: axis 0 is the batch; an axis that changes size when a dynamic
    input axis does (one forward pass per label, at a different size) gets that label.

    Raises:
        InputShapeError: the model fails at a different size of an axis declared dynamic.
    """
    axes = {name: {0: BATCH} for name in names}
    sizes = inputs.dynamic_sizes()
    if not sizes:
        return axes
    base = _output_shapes(model, inputs.random(seed=0))
    for label, size in sizes.items():
        other = size - 1 if size > 1 else size + 1
        try:
            moved = _output_shapes(model, inputs.random(seed=0, sizes={label: other}))
        except Exception as exc:  # the model's own error says why the axis is not dynamic
            raise InputShapeError(f"the model fails when the dynamic axis '{label}' is {other} instead of {size}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", f"do not declare '{label}' dynamic, or fix the model") from exc
        for name, a, b in zip(names, base, moved):
            for axis, (x, y) in enumerate(zip(a, b)):
                if x != y and axis not in axes[name]:
                    axes[name][axis] = label
    return axes


@contextlib.contextmanager
def _native_output_logged() -> Iterator[None]:
    """While the block runs, what native code writes to file descriptors 1 and 2 (the TorchScript
    exporter's ONNX log prints its whole IR graph when an op cannot be exported) goes to the debug
    log, not the terminal: a failed export prints its one error line."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [(fd, os.dup(fd)) for fd in (1, 2)]
    with tempfile.TemporaryFile(mode="w+b") as capture:
        for fd, _ in saved:
            os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                log.debug("exporter: %s", line)


def onnx_from_torch(model: nn.Module, inputs: InputSpec, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> None:
    """Export ``model`` to ``path`` with TorchScript-based ``torch.onnx.export(dynamo=False)``.

    The TorchScript path is the one that turns ModelOpt fake-quant modules into
    QuantizeLinear/DequantizeLinear pairs; it names nodes after module scopes
    (``/layers.0/ffn_in/Gemm``), which the 2:4 post-check uses to map ONNX layers back to modules.
    Inputs keep their names and dynamic axes (batch, and e.g. ``sequence``); outputs are named
    after the model's (``logits``) with the axes that follow those of the inputs. A weight shared by
    two layers (a dense tied ``lm_head``) is stored once.

    Raises:
        ExportError: the exporter failed.
        OSError: the file could not be written (a full disk: also PyTorch's ``RuntimeError`` that
            :func:`sparsekit._io.is_disk_full` recognises); the caller names the output.
    """
    import torch

    names = output_names(model, inputs)
    dynamic = {t.name: t.axes for t in inputs.tensors}
    dynamic.update(output_axes(model, inputs, names))
    sink = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink), _native_output_logged():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, inputs.random(seed=0), str(path), dynamo=False, opset_version=opset,
                input_names=inputs.names, output_names=names, dynamic_axes=dynamic, do_constant_folding=True,
            )
    except Exception as exc:
        if isinstance(exc, OSError) or is_disk_full(exc):
            raise  # writing failed, not exporting: the caller names the file (see export_)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX export failed: {first}", "run with --debug for the exporter's traceback; unsupported ops may need a newer opset (--opset)") from exc
    for line in sink.getvalue().splitlines():
        log.debug("exporter: %s", line)
    if tied_dense_layers(model):
        share_transposed_copies(path)
