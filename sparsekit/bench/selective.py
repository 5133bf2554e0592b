"""Selection-guided 2:4 end to end: only the layers that speed-aware selection measured as winning
at this batch run 2:4 kernels; the rest keep dense kernels.

By construction such a model is never slower than dense beyond noise (a layer that does not win
stays dense), and its Amdahl bound is that of the selected layers' FLOP share alone. The split
and the reasons are plain data (testable anywhere); building the model needs the GPU.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import replace
from sparsekit.analyze.rules import amdahl_bound
from sparsekit.bench.torch_pair import _converted_share
from sparsekit.bench.torch_sparse import to_semi_structured_


def split_selection(selection: dict, candidates: Iterable[str]) -> dict:
    """Which of ``candidates`` (layers that can run 2:4) run sparse, and why each other stays dense.

    Args:
        selection: a :func:`~sparsekit.bench.select.select_layers_by_speed` result (``include``,
            ``measurements``, ``margin``).
        candidates: names of the layers the 2:4 model could convert.

    Returns:
        ``{"sparse": [names], "dense": {name: reason}}`` in ``candidates`` order.
    """
    measured = {m["name"]: m for m in selection.get("measurements", [])}
    include = set(selection.get("include", []))
    margin = selection.get("margin")
    sparse, dense = [], {}
    for name in candidates:
        if name in include:
            sparse.append(name)
            continue
        m = measured.get(name)
        if m is None:
            dense[name] = "not measured by selection"
        elif "speedup" in m:
            s = m["speedup"]
            dense[name] = f"GEMM {m['m']}x{m['k']}x{m['n']} measured {s['ratio']:.2f}x [{s['low']:.2f}, {s['high']:.2f}], below the margin {margin}"
        else:
            dense[name] = m.get("reason", "excluded by selection")
    return {"sparse": sparse, "dense": dense}


def layer_pattern(name: str) -> str:
    """``layers.7.ffn_in`` -> ``layers.*.ffn_in``: the same layer of every block, for compact reports."""
    return re.sub(r"\.\d+\.", ".*.", name)


def grouped(names: Iterable[str]) -> dict[str, int]:
    """Layer names counted by :func:`layer_pattern`, in first-seen order."""
    out: dict[str, int] = {}
    for name in names:
        key = layer_pattern(name)
        out[key] = out.get(key, 0) + 1
    return out


def selective_pair(pair, sparse_names: Iterable[str]):
    """A copy of ``pair`` whose 2:4 side converts only ``sparse_names`` (the dense side is shared).

    With no name selected the 2:4 side is a plain copy of the dense model: timing it is an A/A
    check of "never slower than dense". The FLOP share and Amdahl bound are the selected layers'.
    """
    sparse = copy.deepcopy(pair.dense)
    conversion = to_semi_structured_(sparse, pair.dtype, include=list(sparse_names))
    share = _converted_share(pair.loaded, pair.dense, conversion.converted) if conversion.converted else 0.0
    parity = {"max_rel_err": None, "layer": None, "note": "per-layer parity checked on the fully converted pair; the end-to-end gate runs at every batch"}
    return replace(pair, sparse=sparse, conversion=conversion, flop_share=share, bound=amdahl_bound(share), layer_parity=parity)
