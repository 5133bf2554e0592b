"""Input specifications: names, shapes and dtypes of a model's inputs, and random inputs for them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from sparsekit.errors import InputShapeError

_DTYPES = ("float32", "float16", "int64", "int32")


@dataclass(frozen=True)
class InputTensor:
    """One model input.

    Attributes:
        name: ONNX input name.
        shape: full shape including the batch dimension first, e.g. ``(1, 3, 224, 224)``.
        dtype: one of ``float32``, ``float16``, ``int64``, ``int32``.
        high: for integer inputs, values are drawn from ``[0, high)`` (e.g. a vocabulary size).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    high: int = 2

    def with_batch(self, batch: int) -> "InputTensor":
        """The same input with its first (batch) dimension replaced by ``batch``."""
        return InputTensor(self.name, (batch, *self.shape[1:]), self.dtype, self.high)


@dataclass(frozen=True)
class InputSpec:
    """The inputs of a model, in the order ``forward`` takes them."""

    tensors: tuple[InputTensor, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def with_batch(self, batch: int) -> "InputSpec":
        return InputSpec(tuple(t.with_batch(batch) for t in self.tensors))

    def to_dict(self) -> list[dict[str, Any]]:
        return [dict(asdict(t), shape=list(t.shape)) for t in self.tensors]

    @classmethod
    def from_dict(cls, items: Sequence[dict[str, Any]]) -> "InputSpec":
        return cls(tuple(InputTensor(i["name"], tuple(int(d) for d in i["shape"]), i.get("dtype", "float32"), int(i.get("high", 2))) for i in items))

    def random(self, batch: int | None = None, seed: int = 0) -> tuple:
        """Random torch tensors matching the spec (normal floats, uniform integer ids).

        Args:
            batch: override the batch dimension.
            seed: seed of the private generator (the global RNG is untouched).

        Returns:
            A tuple of tensors in input order.
        """
        import torch

        gen = torch.Generator().manual_seed(seed)
        spec = self.with_batch(batch) if batch else self
        out = []
        for t in spec.tensors:
            if t.dtype.startswith("int"):
                out.append(torch.randint(0, t.high, t.shape, generator=gen, dtype=getattr(torch, t.dtype)))
            else:
                out.append(torch.randn(t.shape, generator=gen).to(getattr(torch, t.dtype)))
        return tuple(out)


_SHAPE_RE = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.\-]*):)?(?P<dims>\d+(?:x\d+)*)(?::(?P<dtype>\w+))?$")


def parse_input_shape(text: str, index: int = 0) -> InputTensor:
    """Parse ``[name:]1x3x224x224[:dtype]`` into an :class:`InputTensor`.

    Raises:
        InputShapeError: the text does not follow the syntax or names an unknown dtype.
    """
    match = _SHAPE_RE.match(text.strip())
    if not match:
        raise InputShapeError(f"cannot read input shape '{text}'", "write it as [name:]DxDxD[:dtype], e.g. input:1x3x224x224 or input_ids:1x128:int64")
    dtype = match.group("dtype") or "float32"
    if dtype not in _DTYPES:
        raise InputShapeError(f"unknown dtype '{dtype}' in input shape '{text}'", f"use one of {', '.join(_DTYPES)}")
    dims = tuple(int(d) for d in match.group("dims").split("x"))
    if any(d <= 0 for d in dims):
        raise InputShapeError(f"input shape '{text}' has a zero dimension", "every dimension must be a positive integer")
    return InputTensor(match.group("name") or ("input" if index == 0 else f"input{index}"), dims, dtype, 2)


def parse_input_shapes(texts: Sequence[str]) -> InputSpec:
    """Parse several ``--input-shape`` values into an :class:`InputSpec`."""
    return InputSpec(tuple(parse_input_shape(t, i) for i, t in enumerate(texts)))
