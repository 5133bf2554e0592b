"""Pydantic validation errors as one line that names the field and what it allows.

``1 validation error for BuildSpec`` tells a client nothing; this says
``workspace_mib = 1e+30 is not allowed: from 16 to 1048576``. The allowed values are read from
the model itself (field bounds, ``Literal`` choices, nested models), so they cannot drift from it.
"""

from __future__ import annotations

import typing

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from sparsekit.backends.spec import BuildSpec
from sparsekit.errors import BuildSpecError

_SHOWN = 3  # errors spelled out in one line; the rest are counted


def field_path(loc: tuple, names: dict[str, str] | None = None) -> str:
    """``('shapes', 'input', 'max', 0)`` -> ``shapes.input.max[0]`` (top-level names mapped by ``names``)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 0 and names and part in names:
            out = names[part]
        else:
            out += ("." if out else "") + str(part)
    return out or "the value"


def _unwrap(annotation):
    """The type inside ``Annotated[...]``/``Optional[...]`` and the constraints attached to it."""
    metadata: list = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for extra in args[1:]:
            metadata += list(extra.metadata) if isinstance(extra, FieldInfo) else [extra]
    return annotation, metadata


def _walk(model: type[BaseModel], loc: tuple):
    """The annotation, constraints and enclosing model of the value at ``loc`` (None where unknown)."""
    annotation, metadata, owner = model, [], model
    for part in loc:
        annotation, _ = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            info = annotation.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None, [], owner
            annotation, metadata = _unwrap(info.annotation)
            metadata = list(info.metadata) + metadata
            continue
        if isinstance(part, str) and annotation is None:
            return None, [], owner
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        if origin is dict and len(args) == 2:
            annotation, metadata = _unwrap(args[1])
        elif origin in (tuple, list) and args:
            annotation, metadata = _unwrap(args[0])
        else:
            return None, [], owner
    inner, _ = _unwrap(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        owner = inner
    return annotation, metadata, owner


def allowed_values(model: type[BaseModel], loc: tuple) -> str:
    """What the field at ``loc`` accepts, in words (empty when the model does not say)."""
    annotation, metadata, _ = _walk(model, loc)
    if annotation is None:
        return ""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    kind = {int: "an integer", float: "a number", str: "a string"}.get(annotation, "")
    ge = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    le = next((m.le for m in metadata if isinstance(m, Le)), None)
    low = f">= {ge}" if ge is not None else next((f"> {m.gt}" for m in metadata if isinstance(m, Gt)), None)
    high = f"<= {le}" if le is not None else next((f"< {m.lt}" for m in metadata if isinstance(m, Lt)), None)
    shortest = next((m.min_length for m in metadata if isinstance(m, MinLen)), None)
    longest = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    if ge is not None and le is not None:
        return f"{kind or 'a value'} from {ge} to {le}"
    if low or high:
        return " ".join(p for p in (kind, " and ".join(p for p in (low, high) if p)) if p)
    if shortest is not None or longest is not None:
        return f"{shortest or 0} to {longest} items" if longest is not None else f"at least {shortest} items"
    return kind


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_error(model: type[BaseModel], error: dict, names: dict[str, str] | None = None) -> str:
    """One pydantic error dict as ``field = value is not allowed: allowed values``."""
    loc, kind = tuple(error.get("loc", ())), error.get("type", "")
    where = field_path(loc, names)
    if kind == "json_invalid":
        return f"not valid JSON ({error.get('ctx', {}).get('error', error.get('msg'))})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where if loc else 'the spec'} must be a JSON object"
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        _, _, owner = _walk(model, loc[:-1])
        fields = sorted(owner.model_fields)
        return f"unknown field '{where}'; allowed fields: {', '.join(fields)}"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if kind == "value_error":
        return f"{where}: {message}"
    allowed = allowed_values(model, loc)
    return f"{where} = {_shown(error.get('input'))} is not allowed ({'allowed: ' + allowed if allowed else message})"


def describe_validation_error(model: type[BaseModel], exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """All errors of ``exc`` in one line (follow-on errors of a failed item are left out)."""
    errors = exc.errors(include_url=False)
    locs = [tuple(e.get("loc", ())) for e in errors]
    kept = [e for e, loc in zip(errors, locs) if not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)]
    parts = [describe_error(model, e, names) for e in kept]
    more = len(parts) - _SHOWN
    return "; ".join(parts[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")


SPEC_FIX = "correct that field; every field and its range is in the BuildSpec schema at /openapi.json"


def build_spec_from(data: str | bytes | dict, fix: str = SPEC_FIX) -> BuildSpec:
    """Validate a build spec given as JSON text or a dict.

    Args:
        data: the spec as JSON text, or already parsed.
        fix: the hint given with a refusal (where the caller's user can read the fields).

    Raises:
        BuildSpecError: not JSON, an unknown field, or a value outside its range; the message
            names the field and the values it allows.
    """
    try:
        if isinstance(data, dict):
            return BuildSpec.model_validate(data)
        return BuildSpec.model_validate_json(data)
    except ValidationError as exc:
        raise BuildSpecError(f"invalid build spec: {describe_validation_error(BuildSpec, exc)}", fix) from exc
