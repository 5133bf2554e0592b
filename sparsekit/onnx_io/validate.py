"""Validate an ONNX file before anything reads a size it declares.

Every tensor (initializers, sparse initializers, ``Constant`` values and node attributes, in the
main graph and in every subgraph) must store exactly the bytes its dims and data type declare, in
``raw_data``, in its typed field (``float_data``, ``int32_data``...) or in its external-data file at
its offset/length. Then ONNX's own checker runs on the file's path (so external data is located but
never loaded, and models over 2 GiB are checked too). ``analyze`` and ``check`` open ONNX files
through :func:`load_validated_onnx`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from sparsekit.errors import ExternalDataError, OnnxModelError
from sparsekit.onnx_io.graphs import iter_graphs
from sparsekit.onnx_io.load import load_onnx
from sparsekit.onnx_io.tensors import node_tensors

log = logging.getLogger(__name__)

MAX_TENSOR_RANK = 64
"""Most dims one tensor may declare (numpy's limit; real weights have 1-5)."""

MAX_TENSOR_BYTES = 2**36
"""Most bytes one tensor may declare (64 GiB; the largest real weight matrices are a few GiB)."""


_FIX = "re-export the model; the file was damaged or written by a faulty tool"


def _bits(data_type: int) -> int | None:
    """Bits per element of an ONNX data type (None: STRING, UNDEFINED or unknown)."""
    import onnx

    tp = onnx.TensorProto
    sub_byte = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6}
    for name, bits in sub_byte.items():
        if getattr(tp, name, None) == data_type:
            return bits
    if data_type in (tp.STRING, tp.UNDEFINED):
        return None
    try:
        return 8 * onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None


def _typed_field(tensor) -> tuple[str, int] | None:
    """Where ``tensor``'s values sit when it has no raw or external data, and how they are counted.

    Returns:
        ``(field, kind)``: kind 0 is one entry per element, 1 two entries per element (complex),
        2 one entry per 2 elements (packed 4-bit), 4 one entry per 4 elements (packed 2-bit);
        None for an unknown data type.
    """
    import onnx

    tp = onnx.TensorProto
    dt = tensor.data_type
    if dt in (tp.FLOAT,):
        return "float_data", 0
    if dt == tp.COMPLEX64:
        return "float_data", 1
    if dt == tp.DOUBLE:
        return "double_data", 0
    if dt == tp.COMPLEX128:
        return "double_data", 1
    if dt == tp.INT64:
        return "int64_data", 0
    if dt in (tp.UINT32, tp.UINT64):
        return "uint64_data", 0
    if dt == tp.STRING:
        return "string_data", 0
    if dt in (getattr(tp, "INT4", -1), getattr(tp, "UINT4", -1), getattr(tp, "FLOAT4E2M1", -1)):
        return "int32_data", 2
    if dt in (getattr(tp, "INT2", -1), getattr(tp, "UINT2", -1)):
        return "int32_data", 4
    if _bits(dt) is not None:
        return "int32_data", 0
    return None


def declared_elements(tensor, where: str = "") -> int:
    """Number of elements ``tensor``'s dims declare, after refusing negative or absurd dims.

    Raises:
        OnnxModelError: a negative dim, more than :data:`MAX_TENSOR_RANK` dims, or more than
            :data:`MAX_TENSOR_BYTES` declared.
    """
    name = f"tensor '{tensor.name}'{where}"
    if len(tensor.dims) > MAX_TENSOR_RANK:
        raise OnnxModelError(f"{name} declares {len(tensor.dims)} dims (at most {MAX_TENSOR_RANK} are possible)", _FIX)
    if any(d < 0 for d in tensor.dims):
        raise OnnxModelError(f"{name} declares a negative dim {list(tensor.dims)}", _FIX)
    count = math.prod(int(d) for d in tensor.dims)
    bits = _bits(tensor.data_type) or 8
    if count * bits > 8 * MAX_TENSOR_BYTES:
        raise OnnxModelError(f"{name} declares dims {list(tensor.dims)} ({count * bits // 8} bytes, over the {MAX_TENSOR_BYTES // 2**30} GiB a tensor may have)", _FIX)
    return count


def _open_inside(base_dir: str, location: str) -> int:
    """Open ``location`` read-only if it is a regular file inside ``base_dir`` (not absolute, no
    ``..``, not a link); the check older ONNX versions do not offer.

    Raises:
        ValueError: the location points outside the folder, or is a link or not a regular file.
    """
    if not location or os.path.isabs(location) or ".." in Path(location).parts:
        raise ValueError(f"'{location}' points outside the directory")
    full = os.path.join(base_dir, location)
    real, root = os.path.realpath(full), os.path.realpath(base_dir)
    if os.path.islink(full) or not real.startswith(root + os.sep) or not os.path.isfile(real):
        raise ValueError(f"'{location}' is not a regular file inside the directory")
    return os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))


def _external_bytes(tensor, base_dir: str) -> int:
    """Bytes of ``tensor``'s external data that lie inside its file at offset/length; the file is
    opened through ONNX's own safe path check (no absolute path, ``..``, link or device) and only
    its size is read.

    Raises:
        ExternalDataError: the location is unsafe or missing, or offset/length lie past its end.
    """
    from onnx import external_data_helper as edh
    from onnx.checker import ValidationError

    where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
    try:
        info = edh.ExternalDataInfo(tensor)
        opener = getattr(edh, "_open_external_data_fd", None)  # ONNX's own safe opener (onnx >= 1.20)
        fd = opener(base_dir, info.location, tensor.name, True) if opener else _open_inside(base_dir, info.location)
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
    except (ValidationError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExternalDataError(f"cannot read tensor '{tensor.name}' from external data '{where}': {first}", "keep the external-data file next to the ONNX, as export wrote it, or re-export") from exc
    offset = info.offset or 0
    if offset > size:
        raise ExternalDataError(f"cannot read tensor '{tensor.name}' from external data '{where}': offset {offset} is past its end ({size} bytes)", "re-export the model; its external-data file does not match it")
    if info.length is not None:
        if info.length > size - offset:
            raise ExternalDataError(f"cannot read tensor '{tensor.name}' from external data '{where}': {info.length} bytes at offset {offset} run past its end ({size} bytes)", "re-export the model; its external-data file does not match it")
        return info.length
    return size - offset


def validate_tensor(tensor, base_dir: str | os.PathLike = "", where: str = "") -> int:
    """Check that ``tensor`` stores exactly the bytes its dims and data type declare.

    Args:
        tensor: an ``onnx.TensorProto`` (of a model loaded without its external data).
        base_dir: the ONNX file's folder, where its external data lives.
        where: text naming where the tensor sits (for the error), e.g. `` in subgraph 'loop.body'``.

    Returns:
        The declared number of elements.

    Raises:
        OnnxModelError: bad dims, an unknown data type, or stored bytes that differ from the
            declared size.
        ExternalDataError: its external data cannot be located, or is shorter than declared.
    """
    import onnx

    name = f"tensor '{tensor.name}'{where}"
    count = declared_elements(tensor, where)
    bits = _bits(tensor.data_type)
    field = _typed_field(tensor)
    if field is None:
        raise OnnxModelError(f"{name} has an unknown or undefined data type ({tensor.data_type})", _FIX)
    if tensor.HasField("segment"):
        raise OnnxModelError(f"{name} is stored in segments, which the kit does not read", "re-export the model without tensor segments")
    want = math.ceil(count * bits / 8) if bits else None
    external = tensor.data_location == onnx.TensorProto.EXTERNAL
    if external:
        have, what = _external_bytes(tensor, str(base_dir)), "bytes of external data"
    elif tensor.HasField("raw_data"):
        if bits is None:
            raise OnnxModelError(f"{name} is a string tensor stored as raw bytes", _FIX)
        have, what = len(tensor.raw_data), "bytes of raw_data"
    else:
        attr, kind = field
        have = len(getattr(tensor, attr))
        want = {0: count, 1: 2 * count, 2: math.ceil(count / 2), 4: math.ceil(count / 4)}[kind]
        if tensor.data_type in (getattr(onnx.TensorProto, "FLOAT6E2M3", -1), getattr(onnx.TensorProto, "FLOAT6E3M2", -1)):
            want = count
        what = f"values in {attr}"
    if have != want:
        raise ExternalDataError(
            f"{name} declares dims {list(tensor.dims)} of {onnx.TensorProto.DataType.Name(tensor.data_type)} ({want} {what} expected) but stores {have}",
            "re-export the model; the file was truncated or written by a faulty tool",
        ) if external else OnnxModelError(
            f"{name} declares dims {list(tensor.dims)} of {onnx.TensorProto.DataType.Name(tensor.data_type)} ({want} {what} expected) but stores {have}", _FIX,
        )
    return count






def _graph_tensors_here(graph):
    """The tensors held directly by ``graph`` (not by its subgraphs)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from node_tensors(node, subgraphs=False)


def validate_tensors(model, base_dir: str | os.PathLike = "") -> int:
    """Validate every tensor of every graph of ``model`` (see :func:`validate_tensor`).

    Returns:
        The number of tensors validated.
    """
    n = 0
    for path, graph in iter_graphs(model.graph):
        where = f" in subgraph '{path}'" if path else ""
        for tensor in _graph_tensors_here(graph):
            validate_tensor(tensor, base_dir, where)
            n += 1
    return n


def run_checker(path: str | os.PathLike) -> None:
    """Run ``onnx.checker.check_model`` on the file's path (external data located, not loaded).

    Raises:
        OnnxModelError: the checker rejects the model (its first line, named).
    """
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, and any C++ error the binding turns into RuntimeError
        text = " ".join(str(exc).split()) or type(exc).__name__  # the checker's message spans lines; one line here
        raise OnnxModelError(f"'{path}' fails the ONNX checker: {text[:300]}", "re-export the model, or repair it so that onnx.checker.check_model accepts it") from exc


def load_validated_onnx(path: str | os.PathLike, model=None):
    """Load an ONNX file without its external data, validate every tensor's stored size against
    its declared size, then run ONNX's checker on it.

    Memory: the protobuf once (external data is never loaded); time: linear in the file size.

    Args:
        path: the ONNX file (its folder holds any external data; the checker reads the file).
        model: the file already loaded without its external data (not loaded again); None loads it.

    Raises:
        OnnxModelError: missing, empty, corrupt or not ONNX; a tensor's dims or stored bytes are
            wrong; the ONNX checker rejects it.
        ExternalDataError: external data is outside the folder, missing or shorter than declared.
    """
    model = load_onnx(path, load_external_data=False) if model is None else model
    count = validate_tensors(model, os.path.dirname(os.path.abspath(path)))
    run_checker(path)
    log.debug("%s: %d tensors validated, ONNX checker passed", path, count)
    return model
