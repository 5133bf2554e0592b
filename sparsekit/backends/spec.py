"""The build spec: everything that decides an engine, strict and hashable.

Dense and sparse builds of a comparison use the same spec except ``sparse``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sparsekit.backends.trt_flavours import RTX_COMPUTE_CAPABILITIES, RTX_DEFAULT_TARGETS
from sparsekit.config import StrictConfig
from sparsekit.errors import SparsekitError

SPEC_VERSION = 1
MAX_DIM = 1 << 20  # one profile dimension (batch, sequence, pixels)
MAX_RANK = 8  # TensorRT's Dims.MAX_DIMS
MAX_VOLUME = 1 << 38  # elements of one max shape: 512 GiB at 2 bytes, more than any GPU holds
MAX_WORKSPACE_MIB = 1 << 20  # 1 TiB

Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]


class ShapeProfile(StrictConfig):
    """Optimization profile of one input: min/opt/max shapes (batch first)."""

    min: tuple[Dim, ...] = Field(min_length=1, max_length=MAX_RANK)
    opt: tuple[Dim, ...] = Field(min_length=1, max_length=MAX_RANK)
    max: tuple[Dim, ...] = Field(min_length=1, max_length=MAX_RANK)

    @model_validator(mode="after")
    def _ordered(self):
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError("min, opt and max must have the same rank")
        if any(not (a <= b <= c) for a, b, c in zip(self.min, self.opt, self.max)) or any(d <= 0 for d in self.min):
            raise ValueError("shapes must satisfy 0 < min <= opt <= max in every dimension")
        if math.prod(self.max) > MAX_VOLUME:
            raise ValueError(f"max shape has {math.prod(self.max)} elements; at most {MAX_VOLUME} are allowed")
        return self


class BuildSpec(StrictConfig):
    """How to build an engine from an ONNX file; its fields are also the options of ``sparsekit build``
    (help, defaults and choices below; ``sparse`` is the command's own off/on/both).

    Attributes:
        backend: ``tensorrt``, ``tensorrt-rtx`` or ``onnxruntime``.
        sparse: allow 2:4 sparse kernels (TensorRT ``SPARSE_WEIGHTS``); the only field that may
            differ between the two builds of a dense/sparse comparison.
        shapes: optimization profile per dynamic input (TensorRT); empty = the ONNX's static shapes.
        workspace_mib: builder workspace limit in MiB.
        opt_level: TensorRT builder optimization level 0-5 (default 3).
        hardware_compat: ``none`` or ``ampere_plus`` (portable across Ampere+ GPUs, fewer tactics).
        detailed_profiling: DETAILED profiling verbosity, needed for per-layer tactics in the report.
        timing_cache: load and save the store's timing cache for this GPU/TensorRT (TensorRT-RTX
            has none: not passed).
        compute_capabilities: GPUs a TensorRT-RTX engine is compiled for, e.g. ``("8.6", "8.9")``;
            empty means TensorRT-RTX's default (8.0, 8.6, 8.9, 12.0). Sorted and de-duplicated, so
            the order given does not change the engine key. Regular TensorRT builds for its GPU.
    """

    version: Literal[1] = Field(SPEC_VERSION, json_schema_extra={"cli": False})
    backend: Literal["tensorrt", "tensorrt-rtx", "onnxruntime"] = Field(
        "tensorrt", description="build backend (tensorrt-rtx builds on CPU for RTX GPUs; onnxruntime runs on CPU, without sparse kernels)")
    sparse: bool = Field(False, description="allow 2:4 sparse kernels (TensorRT's sparse-weights flag)", json_schema_extra={"cli": False})
    shapes: dict[str, ShapeProfile] = Field(
        default_factory=dict, description="optimization profile per input, dims joined by x (repeatable), e.g. input:1x3x224x224,8x3x224x224,32x3x224x224",
        json_schema_extra={"metavar": "NAME:MIN,OPT,MAX"})
    workspace_mib: int = Field(4096, ge=16, le=MAX_WORKSPACE_MIB, description="builder workspace limit in MiB", json_schema_extra={"metavar": "MIB"})
    opt_level: int = Field(3, ge=0, le=5, description="TensorRT builder optimization level", json_schema_extra={"metavar": "0-5"})
    hardware_compat: Literal["none", "ampere_plus"] = Field("none", description="build a plan portable across Ampere+ GPUs (costs tactics)")
    detailed_profiling: bool = Field(True, description="DETAILED profiling verbosity (per-layer tactics in the report)", json_schema_extra={"cli": False})
    timing_cache: bool = Field(True, description="load and save the store's timing cache")
    compute_capabilities: tuple[Literal[RTX_COMPUTE_CAPABILITIES], ...] = Field(
        (), description=f"tensorrt-rtx target GPU(s), repeatable or comma-separated, from {', '.join(RTX_COMPUTE_CAPABILITIES)}; none: TensorRT-RTX's {', '.join(RTX_DEFAULT_TARGETS)}",
        json_schema_extra={"flags": ["--compute-capability"], "metavar": "CC"})

    @field_validator("compute_capabilities", mode="after")
    @classmethod
    def _canonical_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value), key=lambda cc: tuple(int(p) for p in cc.split("."))))

    def with_sparse(self, sparse: bool) -> "BuildSpec":
        """The same spec with only the sparse-weights flag changed."""
        return self.model_copy(update={"sparse": sparse})


_DIMS = re.compile(r"^\d+(x\d+)*$")


def parse_shapes(items: list[str]) -> dict[str, ShapeProfile]:
    """Parse ``NAME:MIN[,OPT,MAX]`` strings (dims joined by ``x``) into profiles.

    ``input:1x3x224x224,8x3x224x224,32x3x224x224`` gives min/opt/max; one shape fixes all three.

    Raises:
        SparsekitError: a malformed entry, with the expected syntax.
    """
    out: dict[str, ShapeProfile] = {}
    for item in items:
        name, sep, rest = item.rpartition(":")
        parts = rest.split(",")
        if not sep or not name or len(parts) not in (1, 3) or not all(_DIMS.match(p) for p in parts):
            raise SparsekitError(f"cannot read shape profile '{item}'", "write NAME:MIN,OPT,MAX with dims joined by x, e.g. input:1x3x224x224,8x3x224x224,32x3x224x224")
        dims = [tuple(int(d) for d in p.split("x")) for p in parts]
        lo, opt, hi = (dims * 3)[:3] if len(dims) == 1 else dims
        try:
            out[name] = ShapeProfile(min=lo, opt=opt, max=hi)
        except ValidationError as exc:
            raise SparsekitError(f"shape profile '{item}': {exc.errors()[0]['msg']}", "use min <= opt <= max, same rank") from exc
    return out
