"""ONNX weights outside the protobuf, read and written one tensor at a time.

The layout is ONNX's standard one, what ``onnx.save_model(model, path, save_as_external_data=True,
all_tensors_to_one_file=True, location="<onnx file name>.data")`` writes: every tensor of at least
:data:`EXTERNAL_MIN_BYTES` lives in ``<onnx file name>.data`` in the ONNX's own folder, referenced
by that relative name with its offset and length. Offsets are aligned to :data:`ALIGNMENT` bytes
so ONNX Runtime can map the file instead of copying it.

While an export is being written, its initializers stay in such a file and the ``ModelProto`` in
memory holds only the graph; passes over the weights (fp16 conversion, int8 packing, the final
write) read one tensor, write it, and drop it. A model small enough for one protobuf (under
:data:`PROTOBUF_LIMIT` bytes) is written back into a single self-contained file by
:func:`write_onnx`, still one tensor at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from sparsekit.onnx_io.tensors import graph_tensors, node_tensors, tensor_array

log = logging.getLogger(__name__)

EXTERNAL_MIN_BYTES = 1024
"""Tensors with at least this many bytes go to the data file (``onnx.save_model``'s default)."""
ALIGNMENT = 4096
"""Byte alignment of every tensor in the data file (a memory page)."""
PROTOBUF_LIMIT = 2**31 - 1
"""Largest protobuf message (bytes): an ONNX whose weights do not fit must use external data."""


def data_file_name(onnx_name: str) -> str:
    """``model.fp16.onnx`` -> ``model.fp16.onnx.data`` (the external-data file's name)."""
    return f"{onnx_name}.data"


def is_external(tensor) -> bool:
    """Whether a ``TensorProto``'s bytes live in an external-data file."""
    import onnx

    return tensor.data_location == onnx.TensorProto.EXTERNAL


def external_location(tensor) -> str:
    """The ``location`` entry of an external tensor ("" when it has none)."""
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def stored_bytes(tensor) -> int:
    """Bytes of a tensor's data, inside the protobuf or in its external file."""
    if is_external(tensor):
        return int(next((e.value for e in tensor.external_data if e.key == "length"), 0) or 0)
    return len(tensor.raw_data) if tensor.HasField("raw_data") else tensor.ByteSize()


def _raw_bytes(array: np.ndarray) -> memoryview:
    """The little-endian bytes of ``array`` as ONNX stores them (no copy when already so)."""
    a = np.ascontiguousarray(array).reshape(-1)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a.view(np.uint8))


def _clear_data(tensor) -> None:
    for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        tensor.ClearField(name)
    del tensor.external_data[:]


class DataFileWriter:
    """Append tensors to one external-data file and point their ``TensorProto`` at them.

    Args:
        path: the file to create (truncated if it exists).
        location: the name the ONNX records (relative to the ONNX's folder); it may differ from
            ``path.name`` while the file is written under a temporary name.
    """

    def __init__(self, path: str | os.PathLike, location: str) -> None:
        self.path = Path(path)
        self.location = location
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self.bytes_written = 0

    def append(self, tensor, array: np.ndarray) -> None:
        """Write ``array`` at the next aligned offset; ``tensor`` (modified in place) refers to it.

        Args:
            tensor: the ``TensorProto`` to repoint; its name, dims and data type must already
                describe ``array``.
            array: the tensor's values (any numeric dtype; written as stored, little-endian).
        """
        import onnx

        offset = self._file.tell()
        pad = -offset % ALIGNMENT
        if pad:
            self._file.write(b"\0" * pad)
            offset += pad
        data = _raw_bytes(array)
        self._file.write(data)
        _clear_data(tensor)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", str(offset)), ("length", str(data.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.bytes_written = offset + data.nbytes

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "DataFileWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def rewritten_data(folder: str | os.PathLike, location: str) -> Iterator[DataFileWriter]:
    """A writer for a new version of ``folder/location``, which replaces the old file only when
    the block ends without an error (the old file stays readable meanwhile).

    Every external tensor the model keeps must be appended to the writer during the block
    (converted, or copied from the old file): the old file is gone afterwards.
    """
    folder = Path(folder)
    new = folder / f"{location}.new"
    writer = DataFileWriter(new, location)
    try:
        yield writer
        writer.close()
        os.replace(new, folder / location)
    finally:
        writer.close()
        new.unlink(missing_ok=True)


def move_weights_(model, folder: str | os.PathLike, location: str) -> list[str]:
    """Put every initializer of at least :data:`EXTERNAL_MIN_BYTES` into ``folder/location``.

    Initializers held inside the protobuf and those in other external files (the TorchScript
    exporter writes one file per tensor for models over 2 GB) are copied one at a time into a new
    ``location`` file; tensors of node attributes are brought back inside the protobuf. Files the
    model referenced before are deleted afterwards.

    Args:
        model: an ``onnx.ModelProto`` loaded with ``load_external_data=False`` (modified in place).
        folder: the folder of the ONNX file the model was loaded from (where its data lives).
        location: the data file name to write (e.g. ``model.fp16.onnx.data``).

    Returns:
        The names of the tensors now in ``location``.
    """
    import onnx

    folder = Path(folder)
    old_files = {external_location(t) for t in graph_tensors(model.graph) if is_external(t)}
    moved = []
    with rewritten_data(folder, location) as writer:
        for t in model.graph.initializer:
            if t.data_type == onnx.TensorProto.STRING or (stored_bytes(t) < EXTERNAL_MIN_BYTES and not is_external(t)):
                continue
            writer.append(t, tensor_array(t, folder))
            moved.append(t.name)
        for node in model.graph.node:  # rare: attribute tensors the exporter stored outside
            for t in node_tensors(node):
                if is_external(t):
                    t.CopyFrom(onnx.numpy_helper.from_array(tensor_array(t, folder), t.name))
    for name in old_files - {location}:
        (folder / name).unlink(missing_ok=True)
    return moved


def compact(model):
    """A fresh copy of ``model`` (its protobuf arena holds only what the model still uses).

    Python protobuf keeps the memory of cleared fields until the whole message is freed; after
    moving gigabytes of weights out of a model, a re-parsed copy gives that memory back.
    """
    import onnx

    fresh = onnx.ModelProto()
    fresh.ParseFromString(model.SerializeToString())
    return fresh


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_TAG_GRAPH = bytes([(7 << 3) | 2])  # ModelProto.graph
_TAG_INITIALIZER = bytes([(5 << 3) | 2])  # GraphProto.initializer
_TAG_RAW_DATA = bytes([(9 << 3) | 2])  # TensorProto.raw_data


def embedded_size(model) -> int:
    """An upper bound of the bytes of ``model`` written as one self-contained protobuf (its
    external tensors inside): each tensor's data plus its name, dims and field overhead."""
    size = model.ByteSize()
    for t in model.graph.initializer:
        if is_external(t):
            size += stored_bytes(t) + len(t.name) + 11 * len(t.dims) + 32
    return size


def write_onnx(model, path: str | os.PathLike, folder: str | os.PathLike, external: bool) -> int:
    """Write ``model`` to ``path``, either with its weights in ``<name>.data`` next to it or inside.

    Args:
        model: an ``onnx.ModelProto`` whose external initializers live in ``folder``.
        path: the ONNX file to write. With ``external``, the model's data file must already be
            ``<path name>.data`` in ``path``'s folder (as :func:`move_weights_` leaves it).
        folder: where the model's external data lives now.
        external: keep the weights in the external-data file; otherwise every external
            initializer is copied, one at a time, into a single protobuf file (which must stay under
            :data:`PROTOBUF_LIMIT`), and the data file is removed.

    Returns:
        Bytes written in all (the ONNX file plus its data file).
    """
    import onnx

    path = Path(path)
    if external:
        names = {external_location(t) for t in model.graph.initializer if is_external(t)}
        expected = data_file_name(path.name)
        if names - {expected} or Path(folder).resolve() != path.parent.resolve():
            raise ValueError(f"external data must be in '{expected}' next to '{path}', not {sorted(names)} in '{folder}'")
        onnx.save_model(model, str(path))
        data = path.parent / expected
        return path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return _write_embedded(model, path, Path(folder))


def _write_embedded(model, path: Path, folder: Path) -> int:
    """One protobuf file, written field by field: the model without its external initializers,
    then the graph field again holding them, one tensor in memory at a time.

    Protobuf merges repeated occurrences of a message field, so a reader sees one graph with all
    its initializers (the ONNX and protobuf specifications' merge rule, used by every parser).
    """
    import onnx

    external = [t for t in model.graph.initializer if is_external(t)]
    data_files = {external_location(t) for t in external}
    head = onnx.ModelProto()
    head.CopyFrom(model)
    kept = [t for t in head.graph.initializer if not is_external(t)]
    del head.graph.initializer[:]
    head.graph.initializer.extend(kept)
    headers = []
    for t in external:
        h = onnx.TensorProto()
        h.CopyFrom(t)
        _clear_data(h)
        h.ClearField("data_location")
        headers.append(h.SerializeToString())
    lengths = [stored_bytes(t) for t in external]
    sizes = [len(h) + 1 + len(_varint(n)) + n for h, n in zip(headers, lengths)]
    graph_bytes = sum(1 + len(_varint(s)) + s for s in sizes)
    total = head.ByteSize() + 1 + len(_varint(graph_bytes)) + graph_bytes
    if total > PROTOBUF_LIMIT:
        raise ValueError(f"the model needs {total} bytes, over the 2 GiB protobuf limit: write it with external data")
    with open(path, "wb") as f:
        f.write(head.SerializeToString())
        del head
        f.write(_TAG_GRAPH + _varint(graph_bytes))
        for t, h, n, s in zip(external, headers, lengths, sizes):
            data = _raw_bytes(tensor_array(t, folder))
            if data.nbytes != n:
                raise ValueError(f"tensor '{t.name}' has {data.nbytes} bytes, its header says {n}")
            f.write(_TAG_INITIALIZER + _varint(s) + h + _TAG_RAW_DATA + _varint(n))
            f.write(data)
            del data
        f.flush()
        os.fsync(f.fileno())
    for name in data_files:
        (folder / name).unlink(missing_ok=True)
    return path.stat().st_size
