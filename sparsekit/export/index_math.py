"""Float arithmetic that computes integer indices from shapes: kept in fp32 by the fp16 export.

Some models compute indices with float math on positions, e.g. T5's relative-position buckets
(``log(distance / max_exact) / log(max_distance / max_exact) * buckets``, then cast to int64 and
used to gather the attention bias). In fp16 a distance near a bucket boundary lands in the next
bucket, and the model adds another position's bias: on a one-layer T5, 0.8 of the bias' scale
and 2% of the encoder output's. Such arithmetic depends on shapes and constants only (TensorRT
folds it at build time), so keeping it fp32 costs nothing at run time.
"""

from __future__ import annotations

def _int_types() -> set[int]:
    import onnx

    t = onnx.TensorProto
    return {t.INT8, t.INT16, t.INT32, t.INT64, t.UINT8, t.UINT16, t.UINT32, t.UINT64}


def index_math_nodes(model) -> list[str]:
    """Names of the nodes that compute, from shapes and constants only, the input of a ``Cast`` to
    an integer type (the float arithmetic of an index), in graph order.

    Args:
        model: an ONNX ``ModelProto`` (its nodes in topological order, as exporters write them).
    """
    graph = model.graph
    shape_only = {t.name for t in graph.initializer}
    producer = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
        if node.op_type in ("Constant", "Shape", "Size") or (node.input and all(not i or i in shape_only for i in node.input)):
            shape_only.update(node.output)
    ints = _int_types()
    keep: set[int] = set()
    stack = [
        producer[n.input[0]] for n in graph.node
        if n.op_type == "Cast" and n.input and n.input[0] in shape_only and n.input[0] in producer
        and next((a.i for a in n.attribute if a.name == "to"), None) in ints
    ]
    while stack:
        node = stack.pop()
        if id(node) in keep or node.op_type in ("Constant", "Shape", "Size"):
            continue
        keep.add(id(node))
        stack.extend(producer[i] for i in node.input if i in producer)
    return [n.name for n in graph.node if n.name and id(n) in keep]
