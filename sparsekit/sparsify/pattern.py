"""2:4 structured-sparsity arithmetic on weight arrays, in TensorRT's layout.

TensorRT groups 4 consecutive INPUT channels for every output channel (and every kernel position
of a conv): axis 1 of a Conv weight ``[K, C, R, S]`` or of a Linear / Gemm(transB=1) weight
``[N, K]``, axis 0 of a MatMul constant ``B [K, N]``. A group is 2:4 when at least 2 of its 4
values are exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np


@dataclass(frozen=True)
class GroupStats:
    """2:4 statistics of one weight along one axis.

    Attributes:
        groups: number of 4-element groups (0 when the axis length is not a multiple of 4).
        conforming: groups with at least 2 zeros.
        zero_fraction: fraction of exactly-zero values in the whole tensor (0..1).
    """

    groups: int
    conforming: int
    zero_fraction: float

    @property
    def is_2to4(self) -> bool:
        """True when every group holds at least 2 zeros (and there is at least one group)."""
        return self.groups > 0 and self.conforming == self.groups

    @property
    def conforming_fraction(self) -> float:
        return self.conforming / self.groups if self.groups else 0.0


def _grouped(weight: np.ndarray, axis: int) -> np.ndarray:
    """View ``weight`` as ``[..., axis_len // 4, 4]`` with the grouped axis last."""
    moved = np.moveaxis(np.asarray(weight), axis, -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // 4, 4)


def group_stats(weight: np.ndarray, axis: int) -> GroupStats:
    """Count 2:4-conforming groups of ``weight`` along ``axis``.

    Args:
        weight: any-rank numeric array (float, fp16 or int8); exact zeros count.
        axis: the axis TensorRT groups by 4.
    """
    return zero_group_stats(np.asarray(weight) == 0, axis)


def zero_group_stats(is_zero: np.ndarray, axis: int) -> GroupStats:
    """Count 2:4-conforming groups of a weight whose zeros are already known.

    For stored types where "zero" is not ``== 0`` (fp8 bit patterns, a quantized weight's zero
    point): see :func:`sparsekit.analyze.onnx_weights.stored_zero_mask`.

    Args:
        is_zero: bool array of the weight's shape, True where the stored value is zero.
        axis: the axis TensorRT groups by 4.
    """
    z = np.asarray(is_zero, dtype=bool)
    zero_fraction = float(np.count_nonzero(z)) / max(z.size, 1)
    if z.ndim == 0 or z.shape[axis] % 4 or z.size == 0:
        return GroupStats(0, 0, zero_fraction)
    zeros = np.count_nonzero(_grouped(z, axis), axis=-1)
    return GroupStats(int(zeros.size), int(np.count_nonzero(zeros >= 2)), zero_fraction)


def _patterns_2of4(device):
    """The 6 keep-2-of-4 patterns as a float32 ``[6, 4]`` tensor, in ModelOpt's order.

    ModelOpt enumerates them as ``set(permutations([1, 1, 0, 0]))``; tuples of floats hash the
    same in every process, so that order is fixed and ties break the same way here as there.
    """
    import torch

    return torch.tensor(list(set(permutations([1.0, 1.0, 0.0, 0.0]))), dtype=torch.float32, device=device)


def magnitude_mask(weight, axis: int = 1):
    """2:4 mask keeping the 2 largest-magnitude values of every group of 4 along ``axis``.

    One implementation for both array kinds: a torch tensor is masked on its own device (GPU
    masks of a large model take milliseconds, and no ModelOpt is involved); a numpy array gets a
    numpy mask back. The choice is ModelOpt's ``sparse_magnitude`` rule, rounding included: every
    group scores the 6 valid patterns by the float32 sum of the magnitudes they keep, and the first
    best pattern in ModelOpt's pattern order wins. Two sums that round to the same float32 are a
    tie even when the magnitudes differ, so a plain "top 2" sort can keep a different pair than
    ModelOpt (rare in random weights, but it happens; ``tests/sparsify/test_direct.py`` builds such
    groups).

    Args:
        weight: ``np.ndarray`` or ``torch.Tensor`` whose ``shape[axis]`` is a multiple of 4
            (float, fp16 or bf16; magnitudes are compared in float32).
        axis: the grouped axis (1: TensorRT's input-channel axis of Linear/Conv weights).

    Returns:
        A boolean array or tensor of ``weight``'s shape (same kind and device), True where the
        value is kept: exactly half of the values.

    Raises:
        ValueError: ``shape[axis]`` is not a multiple of 4.
    """
    import torch

    is_numpy = not isinstance(weight, torch.Tensor)
    w = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)) if is_numpy else weight.detach().float()
    if w.shape[axis] % 4:
        raise ValueError(f"axis {axis} of shape {tuple(w.shape)} is not a multiple of 4")
    moved = w.movedim(axis, -1)
    grouped = moved.abs().reshape(-1, 4)
    patterns = _patterns_2of4(w.device)
    # Each score is the float32 sum of two kept magnitudes (what ModelOpt's matmul against the
    # 0/1 patterns computes), added explicitly so that TF32 matmuls on a GPU cannot round it.
    pairs = [tuple(int(i) for i in torch.nonzero(p).flatten()) for p in patterns.cpu()]
    scores = torch.stack([grouped[:, i] + grouped[:, j] for i, j in pairs], dim=1)
    best = torch.argmax(scores, dim=1)  # the first maximum, as ModelOpt
    keep = patterns[best].bool()
    mask = keep.reshape(moved.shape).movedim(-1, axis)
    return mask.numpy() if is_numpy else mask


def retained_magnitude(weight: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the L1 magnitude of ``weight`` that ``mask`` keeps (0..1)."""
    total = float(np.abs(weight).sum())
    return float(np.abs(weight * mask).sum()) / total if total else 1.0
