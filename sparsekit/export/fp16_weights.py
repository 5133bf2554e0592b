"""fp32 ONNX -> fp16 ONNX: ModelOpt AutoCast decides the graph, the weights are converted one
tensor at a time.

AutoCast on a whole model holds several copies of it (its shape inference serializes and parses
the model, its reference run keeps every activation): 3.3 GB for BERT-base's 438 MB. Here
AutoCast sees the graph only: every float weight of two or more dimensions becomes a graph input
of the same name, type and shape, so AutoCast keeps it fp32 and puts a ``Cast`` to fp16 in front
of each fp16 consumer. Afterwards each such ``Cast`` of a weight is folded into an fp16
initializer written straight to the data file (one per weight however many consumers cast it);
consumers AutoCast keeps in fp32 get the fp32 weight.

The reference run is skipped (``data_max=inf``): it only keeps nodes whose activations exceed
512 in fp32, and ONNX Runtime parity checks the result anyway. AutoCast's initializer rule is
kept: a node whose weight holds values beyond the fp16 range stays fp32; so does float arithmetic
that computes integer indices from shapes (:mod:`sparsekit.export.index_math`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from sparsekit.onnx_io.graphs import replace_nodes
from sparsekit.onnx_io.tensors import tensor_array
from sparsekit.export.external_data import EXTERNAL_MIN_BYTES, compact, is_external, rewritten_data, stored_bytes
from sparsekit.export.index_math import index_math_nodes
from sparsekit._quiet import quiet_modelopt
from sparsekit._lazy import lazy_import

autocast = lazy_import("modelopt.onnx.autocast")

log = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)


def _weights_to_lift(model) -> dict:
    """Float initializers of 2+ dimensions stored in the data file, by name."""
    import onnx

    return {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2 and is_external(t)}


def _beyond_fp16(weights: dict, folder: Path) -> set[str]:
    """Names of the weights holding a value whose magnitude exceeds the fp16 range."""
    out = set()
    for name, t in weights.items():
        a = tensor_array(t, folder)
        if a.size and max(float(a.max()), -float(a.min())) > FP16_MAX:
            out.add(name)
    return out


def _graph_only(model, lifted: dict, folder: Path):
    """A copy of ``model`` with the ``lifted`` weights as graph inputs and every other external
    tensor back inside the protobuf (small: biases, norms, shapes)."""
    import onnx
    from onnx import helper, numpy_helper

    work = onnx.ModelProto()
    work.CopyFrom(model)
    kept = []
    for t in work.graph.initializer:
        if t.name in lifted:
            continue
        if is_external(t):
            t.CopyFrom(numpy_helper.from_array(tensor_array(t, folder), t.name))
        kept.append(t)
    del work.graph.initializer[:]
    work.graph.initializer.extend(kept)
    work.graph.input.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(t.dims)) for name, t in lifted.items())
    return work


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _fold_weight_casts(converted, lifted: dict, folder: Path, writer) -> int:
    """Replace each lifted weight input by initializers: fp16 where AutoCast cast it, fp32 where a
    consumer reads it directly. Returns the number of Cast nodes removed."""
    import onnx

    graph = converted.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in set(node.input):
            if name in lifted:
                consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    removed: set[str] = set()
    new_inits = []
    for name, source in lifted.items():
        users = consumers.get(name, [])
        casts = [n for n in users if n.op_type == "Cast" and n.input[0] == name and _cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in outputs]
        direct = len(casts) < len(users) or name in outputs
        array = tensor_array(source, folder) if casts or direct else None
        if casts:
            half = onnx.TensorProto(name=casts[0].output[0], dims=list(source.dims), data_type=onnx.TensorProto.FLOAT16)
            writer.append(half, np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16))
            new_inits.append(half)
            for cast in casts:
                renamed[cast.output[0]] = half.name
                removed.add(cast.output[0])
        if direct:
            full = onnx.TensorProto(name=name, dims=list(source.dims), data_type=onnx.TensorProto.FLOAT)
            writer.append(full, array)
            new_inits.append(full)
        del array
    replace_nodes(graph, [n for n in graph.node if not (n.op_type == "Cast" and n.output[0] in removed)], renamed)
    inputs = [i for i in graph.input if i.name not in lifted]
    del graph.input[:]
    graph.input.extend(inputs)
    infos = [v for v in graph.value_info if v.name not in removed or v.name in renamed.values()]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    graph.initializer.extend(new_inits)
    return len(removed)


def fp16_from_fp32(model, folder: str | os.PathLike, location: str):
    """Convert a staged fp32 ONNX to fp16 weights and math with fp32 inputs and outputs.

    Args:
        model: the fp32 ``ModelProto`` whose initializers of at least 1 KiB are external in
            ``folder/location`` (see :func:`~sparsekit.export.external_data.move_weights_`).
        folder: the stage folder (AutoCast's input file is written there and removed).
        location: the data file; it is rewritten with the fp16 weights.

    Returns:
        The fp16 ``ModelProto``, its weights external in ``folder/location``.

    Memory: the graph, plus one weight in fp32 and fp16 at a time.
    """
    import onnx

    folder = Path(folder)
    lifted = _weights_to_lift(model)
    too_large = _beyond_fp16(lifted, folder)
    keep_fp32 = sorted({n.name for n in model.graph.node if n.name and too_large.intersection(n.input)})
    if keep_fp32:
        log.info("keeping %d node(s) in fp32: their weights exceed the fp16 range", len(keep_fp32))
    index_math = index_math_nodes(model)
    if index_math:
        log.debug("keeping %d node(s) in fp32: float arithmetic of integer indices", len(index_math))
    keep_fp32 = sorted(set(keep_fp32) | set(index_math))
    work_path = folder / "autocast-input.onnx"
    onnx.save_model(_graph_only(model, lifted, folder), str(work_path))
    try:
        with quiet_modelopt():
            converted = autocast.convert_to_mixed_precision(
                onnx_path=str(work_path), low_precision_type="fp16", keep_io_types=True, data_max=np.inf,
                nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep_fp32] or None,
            )
    finally:
        work_path.unlink(missing_ok=True)
    with rewritten_data(folder, location) as writer:
        folded = _fold_weight_casts(converted, lifted, folder, writer)
        for t in converted.graph.initializer:
            if not is_external(t) and t.data_type != onnx.TensorProto.STRING and stored_bytes(t) >= EXTERNAL_MIN_BYTES:
                writer.append(t, onnx.numpy_helper.to_array(t))
    log.debug("fp16: %d weight(s) converted, %d Cast node(s) folded", len(lifted), folded)
    return compact(converted)
