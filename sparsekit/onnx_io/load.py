"""Load an ONNX file once, every failure one :class:`~sparsekit.errors.OnnxModelError`."""

from __future__ import annotations

import os
from pathlib import Path

from sparsekit.errors import OnnxModelError


def load_onnx(path: str | os.PathLike, load_external_data: bool = True):
    """Load an ONNX model, turning every failure into one clear :class:`OnnxModelError`.

    An empty file, and bytes that happen to parse as a protobuf but carry no IR version, opset or
    graph, are refused too (protobuf reads an empty file as an empty, valid-looking model).

    Raises:
        OnnxModelError: the file is missing, empty, unreadable or not an ONNX model.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise OnnxModelError(f"ONNX file '{p}' does not exist", "check the path, or run 'sparsekit export' first")
    if p.stat().st_size == 0:
        raise OnnxModelError(f"ONNX file '{p}' is empty", "re-export it; the write that made it did not finish")
    try:
        model = onnx.load(str(p), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise OnnxModelError(f"'{p}' is not a readable ONNX model ({type(exc).__name__})", "re-export it; the file is corrupt or not ONNX") from exc
    if not model.ir_version or not model.opset_import or not model.HasField("graph"):
        missing = "IR version" if not model.ir_version else "opset" if not model.opset_import else "graph"
        raise OnnxModelError(f"'{p}' is not an ONNX model (it has no {missing})", "pass an .onnx file written by an ONNX exporter, e.g. 'sparsekit export'")
    return model


def onnx_model(source, load_external_data: bool = False):
    """``source`` itself when it is an already loaded ``onnx.ModelProto``, else the model at that path.

    Library functions take either, so that a command loads its ONNX once and passes the model on.

    Raises:
        OnnxModelError: ``source`` is a path and :func:`load_onnx` refuses it.
    """
    if hasattr(source, "graph"):
        return source
    return load_onnx(source, load_external_data=load_external_data)
