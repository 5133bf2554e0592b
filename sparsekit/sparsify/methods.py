"""Registry of 2:4 sparsity methods: how each maps onto a ModelOpt mode."""

from __future__ import annotations

from dataclasses import dataclass

from sparsekit.analyze.rules import Verdict, modelopt_magnitude, modelopt_sparsegpt
from sparsekit.errors import SparsekitError


@dataclass(frozen=True)
class SparsityMethod:
    """A sparsity method.

    Attributes:
        name: what users type (``magnitude``, ``sparsegpt``).
        modelopt_mode: ModelOpt's mode name.
        needs_calibration: whether it needs a forward loop over data.
        accepts: ModelOpt's shape rule for this mode.
        trt_layout_convs: whether its masks on k x k convs follow TensorRT's layout.
    """

    name: str
    modelopt_mode: str
    needs_calibration: bool
    accepts: callable
    trt_layout_convs: bool

    def will_sparsify(self, kind: str, shape: tuple[int, ...], groups: int = 1) -> Verdict:
        """This method's rule for a layer (grouped convs are refused by the shared rule)."""
        return self.accepts(kind, shape, groups)


METHODS: dict[str, SparsityMethod] = {
    "magnitude": SparsityMethod("magnitude", "sparse_magnitude", False, modelopt_magnitude, True),
    "sparsegpt": SparsityMethod("sparsegpt", "sparsegpt", True, modelopt_sparsegpt, False),
}


def get_method(name: str) -> SparsityMethod:
    """Look up a method by name.

    Raises:
        SparsekitError: unknown method.
    """
    if name not in METHODS:
        raise SparsekitError(f"unknown sparsity method '{name}'", f"use one of: {', '.join(METHODS)}")
    return METHODS[name]
