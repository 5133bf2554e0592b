"""Keep a tied weight stored once in the ONNX.

The TorchScript exporter writes a Linear applied to 3-D activations as ``MatMul(x, W^T)`` and its
constant folding stores ``W^T`` as a new initializer. For a head whose weight is the token
embedding's (GPT-2's ``lm_head``), the file then holds the embedding twice, once transposed (and
fp16 conversion may cast a shared initializer once per consumer). This pass finds initializers that
are exact copies or transposes of another one and reuses the original (through a ``Transpose``
node for a transpose) (TensorRT and ONNX Runtime fold it at build time; the 2:4 check follows
weights through it).
"""

from __future__ import annotations

import logging
import os

from torch import nn
from sparsekit.analyze.ties import tied_weights

log = logging.getLogger(__name__)


def tied_dense_layers(model: nn.Module) -> list[str]:
    """Linear/Conv layers whose weight is shared with another parameter and carries no 2:4 mask."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    return [name for name in tied_weights(model, layers) if getattr(layers[name], "_weight_mask", None) is None]


def share_transposed_copies(path: str | os.PathLike) -> list[str]:
    """Rewrite the ONNX at ``path`` so that no 2-D initializer is stored twice: an exact copy is
    replaced by the original (its consumers re-wired), an exact transpose by a ``Transpose`` node.

    Weights kept in external-data files stay there; at most two weights are in memory at a time
    (order-free fingerprints first, then an exact comparison of the pairs they match).

    Returns:
        The initializers removed.
    """
    from pathlib import Path

    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = str(Path(path).parent)
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    two_d = [t for t in graph.initializer if len(t.dims) == 2]

    def array(t):
        return numpy_helper.to_array(t, base_dir=folder)

    prints = {}
    for t in two_d:  # a transpose keeps dtype, min and max
        a = array(t)
        prints[t.name] = (a.dtype.str, float(np.min(a)), float(np.max(a))) if a.size else (a.dtype.str, 0.0, 0.0)
        del a
    removed: list[str] = []
    renamed: dict[str, str] = {}
    for keep in two_d:
        if keep.name in removed:
            continue
        for other in two_d:
            if other.name == keep.name or other.name in removed or prints[other.name] != prints[keep.name]:
                continue
            same, flipped = tuple(other.dims) == tuple(keep.dims), tuple(other.dims) == tuple(keep.dims)[::-1]
            if not (same or flipped):
                continue
            a, b = array(keep), array(other)
            if same and np.array_equal(a, b):
                renamed[other.name] = keep.name
            elif flipped and np.array_equal(a.T, b):
                graph.node.insert(0, onnx.helper.make_node("Transpose", [keep.name], [other.name], name=f"/shared_weights/{other.name}/Transpose", perm=[1, 0]))
            else:
                continue
            removed.append(other.name)
    if not removed:
        return []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    kept = [t for t in graph.initializer if t.name not in removed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [i for i in graph.input if i.name not in removed]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.save(model, str(path))
    log.info("stored %d tied weight copy(ies) once: %s", len(removed), ", ".join(removed))
    return removed
