"""Which layers TensorRT can run with 2:4 sparse kernels, which ModelOpt will sparsify,
and which are likely to win. Rules from TensorRT's and ModelOpt's documented behaviour."""

from __future__ import annotations

from dataclasses import dataclass

# TensorRT keeps a sparse tactic only where it is faster; maintainers report sparse convs win when
# C_in and C_out are both large (~256+; a 3x3 kernel counts like 9x the input channels).
LIKELY_WIN_MIN_CHANNELS = 256

TRT_SPARSE_DTYPES = ("float32", "float16", "bfloat16", "int8", "float8_e4m3fn", "float8e4m3fn")
"""Stored weight types TensorRT runs with 2:4 sparse kernels (fp32 as TF32; fp8 e4m3 on Hopper and
later). Both spellings of fp8 e4m3fn: numpy's (``float8_e4m3fn``, what ONNX weights report) and
the older one."""


@dataclass(frozen=True)
class Verdict:
    """A yes/no with the reason behind it."""

    ok: bool
    reason: str

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason}


def trt_eligible(kind: str, weight_shape: tuple[int, ...], axis: int, groups: int = 1, constant: bool = True, dtype: str = "float32") -> Verdict:
    """Can this layer hold 2:4 in the layout TensorRT's sparse kernels need?

    Args:
        kind: ``Linear``, ``Conv1d/2d/3d`` (PyTorch) or ``Conv``, ``Gemm``, ``MatMul`` (ONNX).
        weight_shape: the weight's shape as stored.
        axis: the axis TensorRT groups by 4.
        groups: conv groups (TensorRT's sparse convs are dense-grouped only).
        constant: whether the weight is a constant initializer (not computed at run time).
        dtype: stored dtype of the weight.
    """
    if not constant:
        return Verdict(False, "weight is not a constant initializer")
    if kind.startswith("ConvTranspose"):
        return Verdict(False, "transposed conv (deconvolution): TensorRT's 2:4 kernels cover convolutions and GEMMs only")
    if grouped_conv(groups):
        return grouped_conv(groups)
    if dtype not in TRT_SPARSE_DTYPES:
        return Verdict(False, f"weight dtype {dtype}: TensorRT has no 2:4 sparse kernels for it")
    if len(weight_shape) < 2:
        return Verdict(False, "weight is not 2-D or higher")
    if weight_shape[axis] % 4:
        return Verdict(False, f"input channels ({weight_shape[axis]}) not a multiple of 4")
    return Verdict(True, f"groups of 4 along axis {axis} ({weight_shape[axis]} ch)")


def grouped_conv(groups: int) -> Verdict | None:
    """The one rule for grouped and depthwise convs, shared by analyze, every sparsify method and the
    export check: TensorRT runs them with dense kernels only, so they stay dense (None: not grouped)."""
    if groups != 1:
        return Verdict(False, f"grouped conv (groups={groups}): TensorRT runs grouped convs with dense kernels only, so 2:4 would cost accuracy and gain nothing; kept dense")
    return None


def _modelopt_refuses(kind: str, groups: int) -> Verdict | None:
    """Why neither ModelOpt mode sparsifies this layer whatever its shape (grouped, or not a Linear /
    Conv2d); None when its shape decides."""
    if groups != 1:
        return grouped_conv(groups)
    if kind not in ("Linear", "Conv2d"):
        return Verdict(False, f"ModelOpt does not sparsify {kind}")
    return None


def modelopt_magnitude(kind: str, weight_shape: tuple[int, ...], groups: int = 1) -> Verdict:
    """Will ModelOpt's ``sparse_magnitude`` mode sparsify this layer (out % 8, in % 16; not grouped)?"""
    refused = _modelopt_refuses(kind, groups)
    if refused:
        return refused
    out_ch, in_ch = weight_shape[0], weight_shape[1]
    if out_ch % 8 or in_ch % 16:
        return Verdict(False, f"needs out % 8 == 0 and in % 16 == 0 (out={out_ch}, in={in_ch})")
    return Verdict(True, "shape accepted")


def modelopt_sparsegpt(kind: str, weight_shape: tuple[int, ...], groups: int = 1) -> Verdict:
    """Will ModelOpt's ``sparsegpt`` mode sparsify this layer (both dims % 4; not grouped), and in TRT's layout?"""
    refused = _modelopt_refuses(kind, groups)
    if refused:
        return refused
    out_ch, in_ch = weight_shape[0], weight_shape[1]
    if out_ch % 4 or in_ch % 4:
        return Verdict(False, f"needs both dims % 4 == 0 (out={out_ch}, in={in_ch})")
    if kind == "Conv2d" and tuple(weight_shape[2:]) != (1, 1):
        return Verdict(True, "k x k conv: SparseGPT's mask is not in TensorRT's layout; sparsekit uses a magnitude mask in TensorRT layout instead")
    return Verdict(True, "shape accepted")


MIN_GEMM_ROWS = 64
"""Fewest GEMM rows (M: batch x positions) for which a 2:4 kernel is called a likely win. Below it
the weight is read for a handful of rows and the sparse kernel's index overhead dominates:
published cuSPARSELt GEMMs gain nothing for single rows, and the kit's own H200 run measured
2:4 slower than dense even at 4,096 rows for BERT-base shapes (``benchmarks/results/nvidia-h200``)."""


def likely_wins(weight_shape: tuple[int, ...], axis: int, rows: int | None = None) -> Verdict:
    """Heuristic: are sparse kernels likely to beat dense ones for this weight?

    Uses the reduction length (input channels x kernel area), the output channels and, when known,
    the GEMM's rows at the analysed shape (never a win below :data:`MIN_GEMM_ROWS`).
    """
    if rows is not None and rows < MIN_GEMM_ROWS:
        return Verdict(False, f"GEMM of {rows} rows at this shape (< {MIN_GEMM_ROWS}): too few rows for a 2:4 kernel to pay off; dense kernels usually win")
    if axis == 0:  # MatMul B [K, N]
        reduction, outputs = weight_shape[0], weight_shape[1]
    else:
        outputs = weight_shape[0]
        reduction = weight_shape[1]
        for d in weight_shape[2:]:
            reduction *= d
    small = min(reduction, outputs)
    if small >= LIKELY_WIN_MIN_CHANNELS:
        return Verdict(True, f"reduction {reduction} x outputs {outputs} >= {LIKELY_WIN_MIN_CHANNELS}")
    return Verdict(False, f"small GEMM (reduction {reduction}, outputs {outputs} < {LIKELY_WIN_MIN_CHANNELS}): dense kernels usually win")


def amdahl_bound(sparse_flop_share: float, kernel_speedup: float = 2.0) -> float:
    """End-to-end speedup bound when a FLOP share ``f`` (0..1) runs ``kernel_speedup`` times faster.

    ``1 / ((1 - f) + f / kernel_speedup)``; 1.0 when nothing runs sparse.
    """
    f = min(max(sparse_flop_share, 0.0), 1.0)
    return 1.0 / ((1.0 - f) + f / kernel_speedup)
