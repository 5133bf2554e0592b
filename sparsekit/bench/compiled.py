"""Dense and 2:4 models through the same ``torch.compile`` mode.

Eager, the 2:4 side pays work the dense side does not: a layout copy after every converted layer
(torch 2.11 returns the 2:4 product transposed) and unfused bias/activation/residual kernels
around it. Compiled with the same mode, both sides get the same generated code for everything
but the GEMMs, and the compiler may fold the layout copy into the next elementwise kernel.

When the semi-structured tensor subclass does not compile on the installed torch, both sides fall
back to the eager model (timed as one CUDA graph by the runner, as before) and the reason is kept:
the result always says which mode ran.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EAGER = "eager model (each forward one CUDA graph)"


@dataclass
class CompiledModels:
    """What ran on each side.

    Attributes:
        dense, sparse: the callables to time (compiled modules, or the eager ones after a fallback).
        mode: the mode that ran, e.g. ``torch.compile(backend=inductor, mode=default, dynamic=True)``
            or :data:`EAGER`.
        compiled: True when both sides are compiled.
        fallback: why compiling was given up (the exception, one line), else None.
        seconds: compile (first call) seconds per side.
        graph_breaks: Dynamo graph breaks per side (0 = one graph).
    """

    dense: object
    sparse: object
    mode: str
    compiled: bool
    fallback: str | None = None
    seconds: dict = field(default_factory=dict)
    graph_breaks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "compiled": self.compiled, "fallback": self.fallback, "compile_seconds": self.seconds, "graph_breaks": self.graph_breaks}


def _one_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc`` and of its root cause (compile errors wrap the real one)."""
    def line(e: BaseException) -> str:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [""]
        text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # "backend='x' raised:" + the error
        return f"{type(e).__name__}: {text[:240]}"

    root, seen = exc, {id(exc)}
    while True:
        nxt = root.__cause__ or getattr(root, "inner_exception", None)
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            break
        root = nxt
        seen.add(id(nxt))
    return line(exc) if root is exc else f"{line(exc)} (cause: {line(root)})"


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())


def compile_pair(dense, sparse, example_inputs: tuple, backend: str = "inductor", mode: str = "default", dynamic: bool = True) -> CompiledModels:
    """Compile ``dense`` and ``sparse`` (either may be None) the same way, each run once on ``example_inputs``.

    Args:
        dense, sparse: eval-mode modules on their device.
        example_inputs: one batch (on the models' device); the first call compiles.
        backend: ``inductor`` on the GPU; ``eager`` (Dynamo capture only) for checks on CPU.
        mode: ``torch.compile`` mode (``default`` = None).
        dynamic: one graph for every batch and sequence length (no recompile per batch).

    Returns:
        :class:`CompiledModels`; on any failure both sides are the eager models, ``fallback`` says why.
    """
    import torch

    desc = f"torch.compile(backend={getattr(backend, '__name__', backend)}, mode={mode}, dynamic={dynamic})"
    out: dict = {}
    seconds: dict = {}
    breaks: dict = {}
    side = "dense"
    try:
        for side, model in (("dense", dense), ("sparse", sparse)):
            if model is None:
                out[side] = None
                continue
            before = _graph_breaks()
            start = time.perf_counter()
            compiled = torch.compile(model, backend=backend, mode=None if mode == "default" else mode, dynamic=dynamic)
            with torch.no_grad():
                compiled(*example_inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds[side] = round(time.perf_counter() - start, 2)
            breaks[side] = _graph_breaks() - before
            out[side] = compiled
    except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager on both sides, and is reported
        torch._dynamo.reset()
        why = f"{side} side did not compile with {desc}: {_one_line(exc)}"
        log.warning("%s; timing the eager models", why)
        return CompiledModels(dense, sparse, EAGER, False, why, seconds, breaks)
    return CompiledModels(out["dense"], out["sparse"], desc, True, None, seconds, breaks)
