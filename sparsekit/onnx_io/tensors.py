"""Read ONNX tensors wherever their bytes live (inside the file or in external data), and walk
every tensor a graph holds."""

from __future__ import annotations

import os
from typing import Iterator

from sparsekit.onnx_io.graphs import iter_graphs
from sparsekit.errors import ExternalDataError


def initializer_array(model, name: str, base_dir: str | os.PathLike = ""):
    """The numpy array of initializer ``name`` (fp16/int8 kept as stored).

    Args:
        model: an ``onnx.ModelProto`` (loaded with or without its external data).
        name: the initializer's name.
        base_dir: the ONNX file's folder, where its external data lives.

    Raises:
        KeyError: no initializer of that name.
        ExternalDataError: its external data cannot be read (see :func:`tensor_array`).
    """
    for t in model.graph.initializer:
        if t.name == name:
            return tensor_array(t, base_dir)
    raise KeyError(name)


def tensor_array(tensor, base_dir: str | os.PathLike = ""):
    """The numpy array of one ``TensorProto``, whether its bytes are inside the ONNX or in an
    external-data file; only this tensor's bytes are read (memory: one copy of this tensor).

    The location is resolved by ONNX's own reader, which accepts only a regular file inside
    ``base_dir`` (no absolute path, no ``..``, no link, no device) and an offset/length within it.
    Validate the tensor first (:func:`~sparsekit.onnx_io.validate.validate_tensor`, done by
    :func:`~sparsekit.onnx_io.validate.load_validated_onnx`) so that its declared shape
    matches the bytes it stores.

    Args:
        tensor: an ``onnx.TensorProto`` (an initializer of a model loaded without external data).
        base_dir: the folder of the ONNX file the tensor belongs to.

    Raises:
        ExternalDataError: the location is unsafe or missing, or the file is too short.
    """
    from onnx import numpy_helper
    from onnx.checker import ValidationError

    try:
        return numpy_helper.to_array(tensor, base_dir=str(base_dir))
    except (ValidationError, ValueError, OSError) as exc:
        where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExternalDataError(f"cannot read tensor '{tensor.name}' from external data '{where}': {first}", "keep the external-data file next to the ONNX, as export wrote it, or re-export") from exc


def graph_tensors(graph) -> Iterator:
    """Every ``TensorProto`` of a graph: initializers, sparse initializers, node attributes and
    the tensors of subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from node_tensors(node)


def node_tensors(node, subgraphs: bool = True) -> Iterator:
    """Every ``TensorProto`` held by a node's attributes, those of its subgraphs too unless ``subgraphs`` is False."""
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if not subgraphs:
            continue
        if attr.HasField("g"):
            yield from graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from graph_tensors(sub)


def constant_tensors(model) -> dict:
    """Name -> ``TensorProto`` of every initializer and every ``Constant`` node's ``value``, in the
    main graph and its subgraphs (ONNX names are unique across scopes)."""
    out: dict = {}
    for _, graph in iter_graphs(model.graph):
        for t in graph.initializer:
            out.setdefault(t.name, t)
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
                if value is not None:
                    out.setdefault(node.output[0], value)
    return out
