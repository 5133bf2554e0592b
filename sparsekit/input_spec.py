"""Input specifications: names, shapes, dtypes, integer value ranges and dynamic axes of a model's
inputs, and random inputs for them.

Command-line syntax (``--input-shape``, and the strings a factory may return)::

    [NAME:]DxDxD[:DTYPE][:LOW..HIGH]      e.g.  input:1x3x224x224   input_ids:1x128:int64:0..30522

``LOW..HIGH`` is the half-open range ``[LOW, HIGH)`` integer values are drawn from (token ids below
the vocabulary size). Dynamic axes (``--dynamic-axis``) are ``NAME:AXIS[=LABEL]``; axis 0 is always
the dynamic ``batch`` axis, and axes that share a label share their size.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from sparsekit.errors import InputShapeError

log = logging.getLogger(__name__)

_DTYPES = ("float32", "float16", "int64", "int32")
BATCH = "batch"
"""Label of axis 0, dynamic in every export."""
UNKNOWN_HIGH = 2
"""Integer inputs without a known range draw values from ``[0, 2)`` (a warning says so)."""
MAX_INPUT_ELEMENTS = 1 << 28
"""Most elements (all inputs together, 268 M: 1 GiB of float32) the kit makes example inputs of."""
MAX_INPUTS = 256
"""Most inputs a recorded input spec may list."""
_RECORDED_FIX = "re-create the file with sparsekit, or give the inputs with --input-shape"


def _int(value: Any) -> int:
    """An integer from a file: ints only (no bools, floats or strings that merely convert)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


@dataclass(frozen=True)
class InputTensor:
    """One model input.

    Attributes:
        name: the ``forward`` parameter it is passed as (and the ONNX input name).
        shape: full shape including the batch dimension first, e.g. ``(1, 3, 224, 224)``.
        dtype: one of ``float32``, ``float16``, ``int64``, ``int32``.
        high: for integer inputs, values are drawn from ``[low, high)`` (e.g. a vocabulary size);
            None when the range is unknown (values then come from ``[0, 2)``).
        low: lower end of the integer range (inclusive).
        dynamic: dynamic axes besides the batch axis, as ``(axis, label)`` pairs (e.g.
            ``((1, "sequence"),)``); inputs whose axes share a label share that size.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    high: int | None = None
    low: int = 0
    dynamic: tuple[tuple[int, str], ...] = ()

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith("int")

    @property
    def axes(self) -> dict[int, str]:
        """Every dynamic axis: ``{0: "batch", axis: label, ...}``."""
        return {0: BATCH, **dict(self.dynamic)}

    def with_batch(self, batch: int) -> "InputTensor":
        """The same input with its first (batch) dimension replaced by ``batch``."""
        return replace(self, shape=(batch, *self.shape[1:]))

    def resized(self, sizes: dict[str, int]) -> "InputTensor":
        """The same input with each dynamic axis whose label is in ``sizes`` set to that size."""
        shape = list(self.shape)
        for axis, label in self.axes.items():
            if label in sizes:
                shape[axis] = int(sizes[label])
        return replace(self, shape=tuple(shape))

    def with_range(self, low: int, high: int) -> "InputTensor":
        return replace(self, low=int(low), high=int(high))

    def with_dynamic(self, axis: int, label: str) -> "InputTensor":
        """The same input with ``axis`` (>= 1) dynamic under ``label``.

        Raises:
            InputShapeError: the axis is 0 (always the batch) or beyond the input's rank.
        """
        if not 0 < axis < len(self.shape):
            raise InputShapeError(f"input '{self.name}' has no axis {axis} to make dynamic (rank {len(self.shape)}; axis 0 is always the batch)", f"give an axis from 1 to {len(self.shape) - 1}")
        dynamic = dict(self.dynamic)
        dynamic[axis] = label
        return replace(self, dynamic=tuple(sorted(dynamic.items())))


@dataclass(frozen=True)
class InputSpec:
    """The inputs of a model, in the order ``forward`` takes them."""

    tensors: tuple[InputTensor, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def get(self, name: str) -> InputTensor | None:
        return next((t for t in self.tensors if t.name == name), None)

    def with_batch(self, batch: int) -> "InputSpec":
        return InputSpec(tuple(t.with_batch(batch) for t in self.tensors))

    def resized(self, batch: int | None = None, sizes: dict[str, int] | None = None) -> "InputSpec":
        """The spec with the batch and the dynamic axes named in ``sizes`` (label -> size) changed."""
        sizes = dict(sizes or {})
        if batch:
            sizes[BATCH] = batch
        return InputSpec(tuple(t.resized(sizes) for t in self.tensors))

    def replace(self, tensor: InputTensor) -> "InputSpec":
        """The spec with the input of the same name replaced by ``tensor``."""
        return InputSpec(tuple(tensor if t.name == tensor.name else t for t in self.tensors))

    def dynamic_sizes(self) -> dict[str, int]:
        """Size of each dynamic axis besides the batch, by label (e.g. ``{"sequence": 128}``)."""
        return {label: t.shape[axis] for t in self.tensors for axis, label in t.dynamic}

    def to_dict(self) -> list[dict[str, Any]]:
        return [dict(asdict(t), shape=list(t.shape), dynamic=[[a, lab] for a, lab in t.dynamic]) for t in self.tensors]

    @classmethod
    def from_dict(cls, items: Sequence[dict[str, Any]]) -> "InputSpec":
        """The spec :meth:`to_dict` wrote, every field checked (a file may hold anything).

        Raises:
            InputShapeError: a malformed entry, an unknown dtype, or sizes past :data:`MAX_INPUT_ELEMENTS`.
        """
        if not isinstance(items, (list, tuple)) or len(items) > MAX_INPUTS:
            raise InputShapeError(f"the recorded inputs are not a list of at most {MAX_INPUTS} entries", _RECORDED_FIX)
        tensors = []
        for i in items:
            try:
                high = i.get("high", UNKNOWN_HIGH)
                tensor = InputTensor(
                    str(i["name"]), tuple(_int(d) for d in i["shape"]), str(i.get("dtype", "float32")),
                    None if high is None else _int(high), _int(i.get("low", 0)),
                    tuple((_int(a), str(lab)) for a, lab in i.get("dynamic", [])),
                )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise InputShapeError(f"a recorded input is malformed ({type(exc).__name__}: {str(exc)[:80]})", _RECORDED_FIX) from exc
            if tensor.dtype not in _DTYPES or len(tensor.shape) > 8 or any(d < 1 for d in tensor.shape):
                raise InputShapeError(f"recorded input '{tensor.name[:60]}' has dtype {tensor.dtype[:20]!r} and shape {tensor.shape[:9]}", _RECORDED_FIX)
            tensors.append(tensor)
        spec = cls(tuple(tensors))
        spec.check_size("the recorded inputs")
        return spec

    def check_size(self, what: str) -> None:
        """Refuse inputs whose elements together exceed :data:`MAX_INPUT_ELEMENTS` (before any is made).

        Raises:
            InputShapeError: too many elements.
        """
        total = 0
        for t in self.tensors:
            count = 1
            for d in t.shape:
                count *= max(int(d), 0)
            total += count
        if total > MAX_INPUT_ELEMENTS:
            raise InputShapeError(f"{what} have {total:,} elements in all, more than the {MAX_INPUT_ELEMENTS:,} the kit makes example inputs of", "give smaller shapes with --input-shape (batch 1 is enough to export and check)")

    def random(self, batch: int | None = None, seed: int = 0, sizes: dict[str, int] | None = None) -> tuple:
        """Random torch tensors matching the spec (normal floats, uniform integers in their range,
        and for attention masks, padding masks: see :func:`is_padding_mask`).

        Args:
            batch: override the batch dimension.
            seed: seed of the private generator (the global RNG is untouched).
            sizes: override dynamic axes by label, e.g. ``{"sequence": 64}``.

        Returns:
            A tuple of tensors in input order.
        """
        import torch

        gen = torch.Generator().manual_seed(seed)
        spec = self.resized(batch, sizes) if (batch or sizes) else self
        out = []
        for t in spec.tensors:
            if is_padding_mask(t):
                out.append(_padding_mask(t, gen))
            elif t.is_integer:
                high = t.high if t.high is not None else UNKNOWN_HIGH
                out.append(torch.randint(t.low, high, t.shape, generator=gen, dtype=getattr(torch, t.dtype)))
            else:
                out.append(torch.randn(t.shape, generator=gen).to(getattr(torch, t.dtype)))
        return tuple(out)

    def warn_unknown_ranges(self, model_name: str) -> list[str]:
        """Log a warning for each integer input without a value range; returns their names."""
        missing = [t.name for t in self.tensors if t.is_integer and t.high is None]
        for name in missing:
            log.warning(
                "integer input '%s' of %s has no value range: random inputs (calibration, parity) draw only 0 and 1; "
                "give one, e.g. --input-shape %s:%s:int64:0..VOCAB_SIZE", name, model_name, name, "x".join(map(str, self.get(name).shape)),
            )
        return missing


def is_padding_mask(t: InputTensor) -> bool:
    """Whether ``t`` is an attention mask (``attention_mask``, ``decoder_attention_mask``: an
    integer ``[B, S]`` input with values in ``{0, 1}``), whose random values are padding masks:
    per row, ones then zeros, at least one one. Uniform 0/1 masks can mask every position a
    causal decoder's first token sees, and the model's own output is then NaN."""
    return t.name.endswith("attention_mask") and t.is_integer and len(t.shape) == 2 and (t.low, t.high) == (0, 2)


def _padding_mask(t: InputTensor, gen):
    import torch

    rows, length = t.shape
    kept = torch.randint(1, length + 1, (rows, 1), generator=gen)
    return (torch.arange(length).unsqueeze(0) < kept).to(getattr(torch, t.dtype))


_SHAPE_RE = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.\-]*):)?(?P<dims>\d+(?:x\d+)*)(?::(?P<dtype>[a-z]\w*))?(?::(?P<low>-?\d+)\.\.(?P<high>-?\d+))?$")
_SHAPE_FIX = "write it as [name:]DxD[:dtype][:LOW..HIGH], e.g. input:1x3x224x224 or input_ids:1x128:int64:0..30522"


def parse_input_shape(text: str, index: int = 0) -> InputTensor:
    """Parse ``[name:]1x3x224x224[:dtype][:LOW..HIGH]`` into an :class:`InputTensor`.

    Raises:
        InputShapeError: the text does not follow the syntax, names an unknown dtype, or gives an
            empty range or a range for a float input.
    """
    match = _SHAPE_RE.match(text.strip())
    if not match:
        raise InputShapeError(f"cannot read input shape '{text}'", _SHAPE_FIX)
    dtype = match.group("dtype") or ("int64" if match.group("high") else "float32")
    if dtype not in _DTYPES:
        raise InputShapeError(f"unknown dtype '{dtype}' in input shape '{text}'", f"use one of {', '.join(_DTYPES)}")
    dims = tuple(int(d) for d in match.group("dims").split("x"))
    if any(d <= 0 for d in dims):
        raise InputShapeError(f"input shape '{text}' has a zero dimension", "every dimension must be a positive integer")
    tensor = InputTensor(match.group("name") or default_input_name(index), dims, dtype)
    if match.group("high") is not None:
        low, high = int(match.group("low")), int(match.group("high"))
        if not tensor.is_integer:
            raise InputShapeError(f"input shape '{text}' gives a value range for a {dtype} input", "value ranges are for integer inputs (int64/int32); drop the range")
        if high <= low:
            raise InputShapeError(f"input shape '{text}' has an empty value range {low}..{high}", "write LOW..HIGH with HIGH > LOW (HIGH is excluded)")
        tensor = tensor.with_range(low, high)
    return tensor


def default_input_name(index: int) -> str:
    """``input``, ``input1``, ``input2``...: names given to inputs declared without one."""
    return "input" if index == 0 else f"input{index}"


def is_default_name(name: str) -> bool:
    return re.fullmatch(r"input\d*", name) is not None


def parse_input_shapes(texts: Sequence[str]) -> InputSpec:
    """Parse several ``--input-shape`` values into an :class:`InputSpec`."""
    tensors = [parse_input_shape(t, i) for i, t in enumerate(texts)]
    names = [t.name for t in tensors]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputShapeError(f"input '{dupes[0]}' is given twice", "give each input once, each with its own name")
    return InputSpec(tuple(tensors))


def input_from_tuple(item: Sequence[Any], index: int = 0) -> InputTensor:
    """An input declared as ``(name, shape, dtype[, range])``; the range is ``high`` or ``(low, high)``.

    Raises:
        InputShapeError: the tuple does not have that form.
    """
    fix = "declare it as (name, shape, dtype) or (name, shape, dtype, (low, high)), e.g. ('input_ids', (1, 128), 'int64', (0, 30522))"
    if not isinstance(item, (tuple, list)) or len(item) not in (3, 4) or not isinstance(item[0], str):
        raise InputShapeError(f"input declaration {item!r} is not (name, shape, dtype[, range])", fix)
    name, shape, dtype = item[0], item[1], item[2]
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise InputShapeError(f"input '{name}' has shape {shape!r}, not a sequence of integers", fix) from exc
    text = f"{name}:{'x'.join(map(str, dims))}:{dtype}"
    if len(item) == 4:
        rng = item[3]
        low, high = (0, rng) if isinstance(rng, int) else tuple(rng) if isinstance(rng, (tuple, list)) and len(rng) == 2 else (None, None)
        if low is None:
            raise InputShapeError(f"input '{name}' has range {rng!r}, not high or (low, high)", fix)
        text += f":{int(low)}..{int(high)}"
    return parse_input_shape(text, index)


_AXIS_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]*):(?P<axis>\d+)(?:=(?P<label>[A-Za-z_][\w\-]*))?$")


def apply_dynamic_axes(spec: InputSpec, items: Sequence[str]) -> InputSpec:
    """Apply ``--dynamic-axis NAME:AXIS[=LABEL]`` values (default label ``axisN``) to ``spec``.

    Raises:
        InputShapeError: malformed value, unknown input name, or an axis the input does not have.
    """
    for item in items:
        match = _AXIS_RE.match(item.strip())
        if not match:
            raise InputShapeError(f"cannot read dynamic axis '{item}'", "write it as NAME:AXIS[=LABEL], e.g. input_ids:1=sequence")
        name, axis = match.group("name"), int(match.group("axis"))
        tensor = spec.get(name)
        if tensor is None:
            raise InputShapeError(f"dynamic axis '{item}' names input '{name}', which the model does not take", f"use one of the inputs: {', '.join(spec.names)}")
        spec = spec.replace(tensor.with_dynamic(axis, match.group("label") or f"axis{axis}"))
    return spec
