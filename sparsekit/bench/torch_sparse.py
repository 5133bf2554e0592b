"""PyTorch semi-structured (2:4) sparse execution: cuSPARSELt or CUTLASS kernels through
``torch.sparse.to_sparse_semi_structured``. Runs only on CUDA GPUs with compute capability >= 8.0.

This is both a second deployment path (serving from PyTorch) and the way to measure real 2:4
speedups without TensorRT. PyTorch runs 2:4 for Linear layers only (not convolutions).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from torch import nn

from sparsekit.sparsify.pattern import group_stats
from sparsekit.bench.cuda_timing import CudaEventTimer, capture_graph
from sparsekit._lazy import lazy_import

mts = lazy_import("modelopt.torch.sparsity")

log = logging.getLogger(__name__)

# cuSPARSELt's minimum sparse-operand shapes per dtype (rows, cols); CUTLASS needs larger ones.
MIN_SHAPE = {"float16": (16, 16), "bfloat16": (16, 16), "int8": (32, 32)}


@dataclass
class Conversion:
    """Which Linear layers were converted, which were not and why, and the weight bytes."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    dense_weight_bytes: int = 0
    sparse_weight_bytes: int = 0

    def to_dict(self) -> dict:
        return {"converted": self.converted, "skipped": self.skipped, "dense_weight_bytes": self.dense_weight_bytes, "sparse_weight_bytes": self.sparse_weight_bytes}


def convertible(module: nn.Module, dtype: str = "float16") -> str | None:
    """None when ``module`` can run as a semi-structured sparse Linear, else the reason."""
    if not isinstance(module, nn.Linear):
        return "PyTorch runs 2:4 only for Linear layers"
    w = module.weight.detach()
    rows, cols = w.shape
    min_rows, min_cols = MIN_SHAPE[dtype]
    if rows % min_rows or cols % min_cols:
        return f"weight {rows}x{cols} is not a multiple of ({min_rows}, {min_cols})"
    if not group_stats(w.float().cpu().numpy(), 1).is_2to4:
        return "weight is not 2:4 on the input axis"
    return None


def _tensor_bytes(t) -> int:
    parts = [getattr(t, name, None) for name in ("packed", "meta", "packed_t", "meta_t", "compressed_swizzled_bitmask")]
    parts = [p for p in parts if p is not None]
    return sum(p.numel() * p.element_size() for p in parts) if parts else t.numel() * t.element_size()


def semi_structured(weight):
    """``weight`` (2:4 along its input axis, CUDA, fp16/bf16) as a semi-structured sparse tensor.

    cuSPARSELt's own transposed-output mode is left off: on torch 2.11 with cuSPARSELt 0.8 on an
    H200, converting with ``SparseSemiStructuredTensor._FUSE_TRANSPOSE = True`` made 2:4 calls so
    slow that preparing a BERT-large pair took 87 s instead of a few, and its first batch had not
    finished after 4 minutes (``benchmarks/results/nvidia-h200/fused-transpose-attempt.json``).
    Converted Linear layers get contiguous outputs from :func:`to_semi_structured_`'s hooks instead.
    """
    from torch.sparse import to_sparse_semi_structured

    return to_sparse_semi_structured(weight)


def _contiguous_input(module, args):
    """Forward pre-hook: a strided input (e.g. ``x[:, 0]``) goes to the 2:4 kernel as a contiguous copy.

    cuSPARSELt reads the dense operand with its own leading dimension: on torch 2.11 a row-strided
    view gave wrong results (relative error 1.56 on an H200; 1.10 at a BERT pooler over ``x[:, 0]``).
    """
    x = args[0]
    return None if x.is_contiguous() else (x.contiguous(), *args[1:])


def _contiguous_output(module, args, output):
    """Forward hook: the 2:4 product comes back as a transposed view on torch 2.11; make it ``[M, N]`` contiguous.

    Left strided, everything downstream pays: fused SDPA attention refuses it and falls back to
    the unfused math path in fp32, reshapes become copies and elementwise kernels run strided
    (measured on an H200: a BERT-large forward 3x slower than dense). One copy per layer is far
    cheaper. A no-op where torch already returns a contiguous product (2.13).
    """
    return None if output.is_contiguous() else output.contiguous()


def to_semi_structured_(model: nn.Module, dtype: str = "float16", include=None) -> Conversion:
    """Replace the weight of every eligible 2:4 Linear of a CUDA model by a semi-structured tensor.

    The model must already be on CUDA in ``dtype``. ModelOpt sparse modules should be exported
    first (:func:`plain_model`) so that ``weight`` is a plain parameter holding the masked values.
    A converted model cannot be copied or moved afterwards (torch 2.11 cannot clone the tensor
    subclass): copy first, convert the copy.

    Args:
        include: layer names allowed to run 2:4 (e.g. what speed-aware selection measured as
            winning); None allows every eligible layer. The others keep dense kernels and are
            listed in ``skipped`` as not selected.
    """
    import torch

    out = Conversion()
    allowed = None if include is None else set(include)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        out.dense_weight_bytes += module.weight.numel() * module.weight.element_size()
        reason = "kept dense: not selected" if allowed is not None and name not in allowed else convertible(module, dtype)
        if reason:
            out.skipped[name] = reason
            out.sparse_weight_bytes += module.weight.numel() * module.weight.element_size()
            continue
        sparse = semi_structured(module.weight.detach())
        module.weight = torch.nn.Parameter(sparse, requires_grad=False)
        module.register_forward_pre_hook(_contiguous_input)
        module.register_forward_hook(_contiguous_output)
        out.converted.append(name)
        out.sparse_weight_bytes += _tensor_bytes(sparse)
    return out


def plain_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with ModelOpt's sparse wrappers removed (masks baked into the weights)."""
    model = copy.deepcopy(model)
    if any(hasattr(m, "_weight_mask") for m in model.modules()):
        model = mts.export(model)
    return model


class TorchCudaRunner:
    """Timed runner of a CUDA PyTorch model on rotated random inputs, optionally as a CUDA graph.

    Args:
        model: module on CUDA (fp16/bf16), eval mode.
        inputs: input spec (batch set); float inputs are cast to ``dtype``.
        buffers: distinct random input sets.
        graphs: capture the whole forward into a CUDA graph (static input buffers). When capture
            fails the runner times eager calls instead: ``method`` says which, ``note`` why.
        label: name in reports.
    """

    def __init__(self, model: nn.Module, inputs, dtype: str = "float16", buffers: int = 8, graphs: bool = True, label: str = "torch", seed: int = 0) -> None:
        import torch

        self.label = label
        self.method = "eager"
        self.note = ""
        self._buffers = [cuda_inputs(inputs.random(seed=seed + i), dtype) for i in range(buffers)]
        self._i = 0
        self._model = model
        if graphs:
            try:
                self._static = tuple(t.clone() for t in self._buffers[0])
                graph = capture_graph(lambda: self._forward(self._static))
                self._timer = CudaEventTimer(graph.replay, self._next_into_static)
                self.method = "cuda-graph"
                return
            except Exception as exc:  # noqa: BLE001 - any capture failure falls back, and is reported
                torch.cuda.synchronize()
                self.note = f"{label}: CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); timed eager calls"
        self._timer = CudaEventTimer(lambda: self._forward(self._current), self._next)

    def _forward(self, args):
        import torch

        with torch.no_grad():
            return self._model(*args)

    def _next(self) -> None:
        self._current = self._buffers[self._i % len(self._buffers)]
        self._i += 1

    def _next_into_static(self) -> None:
        src = self._buffers[self._i % len(self._buffers)]
        self._i += 1
        for dst, s in zip(self._static, src):
            dst.copy_(s)

    def step(self) -> float:
        return self._timer()


def cuda_inputs(tensors: tuple, dtype: str) -> tuple:
    """Move CPU input tensors to CUDA; floating ones are cast to ``dtype``, integer ones keep theirs."""
    import torch

    tdtype = getattr(torch, dtype)
    return tuple(t.to("cuda", tdtype if t.is_floating_point() else t.dtype) for t in tensors)
