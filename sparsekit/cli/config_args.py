"""Command-line options generated from a stage's ``*Config``: each setting is declared once.

A stage config (:class:`~sparsekit.config.StrictConfig`) is the input of its library function; the
recipe composes the same classes, and each subcommand turns their fields into options here, so
names, defaults, choices and help never drift apart. A field ``name`` becomes ``--name`` (``_`` ->
``-``) unless its ``json_schema_extra`` names other ``flags``:

* ``bool`` -> a switch (``--x``, and ``--no-x`` when the default is on);
* ``Literal[...]`` -> ``choices``; ``list[str]`` -> a repeatable option; ``list[float]`` -> ``a,b,c``;
* ``int`` / ``float`` / ``str`` (optionally ``| None``) -> a typed option;
* ``dict[str, ...]`` -> a repeatable option of strings that the command parses and passes to
  :func:`config_from_args` as a fixed value (e.g. ``--shapes NAME:MIN,OPT,MAX``). A tuple is a list.

Options that are not given keep the config's default (argparse defaults are ``None``), so the
config alone decides defaults; validation errors become one line naming the option.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from sparsekit.errors import SparsekitError

_SKIP = "cli"
"""``json_schema_extra={"cli": False}`` keeps a field out of the command line (recipe-only)."""


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _extra(field) -> dict:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def cli_fields(config: type[BaseModel]) -> dict[str, Any]:
    """The fields of ``config`` that are command-line options (name -> pydantic FieldInfo)."""
    return {name: f for name, f in config.model_fields.items() if _extra(f).get(_SKIP, True)}


def flags_of(name: str, field) -> list[str]:
    """The option strings of field ``name`` (``--calib-samples``, or the field's own ``flags``)."""
    return list(_extra(field).get("flags") or [f"--{name.replace('_', '-')}"])


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers, e.g. 0.25,0.5") from exc


def _help(field, default: Any) -> str:
    text = field.description or ""
    shown = default if not isinstance(default, (list, tuple, dict)) else (",".join(map(str, default)) or "none")
    return text if default is None or default is False else f"{text} (default: {shown})"


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: type[BaseModel], skip: Iterable[str] = ()) -> None:
    """Add one option per field of ``config`` (except ``skip`` and recipe-only fields) to ``parser``."""
    skip = set(skip)
    for name, field in cli_fields(config).items():
        if name in skip:
            continue
        flags = flags_of(name, field)
        default = field.get_default(call_default_factory=True)
        annotation = _unwrap_optional(field.annotation)
        origin = typing.get_origin(annotation)
        if origin is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
            annotation, origin = list[typing.get_args(annotation)[0]], list
        kw: dict[str, Any] = {"dest": name, "default": None, "help": _help(field, default)}
        if annotation is bool:
            kw["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif origin is typing.Literal:
            kw["choices"] = list(typing.get_args(annotation))
            kw["type"] = type(kw["choices"][0])
        elif origin is list and typing.get_args(annotation) in ((str,), ()):
            kw.update(action="append", metavar=_extra(field).get("metavar", "PATTERN"))
        elif origin is list and typing.get_origin(typing.get_args(annotation)[0]) is typing.Literal:  # checked by the config
            kw.update(action="append", metavar=_extra(field).get("metavar", "|".join(map(str, typing.get_args(typing.get_args(annotation)[0])))))
        elif origin is list and typing.get_args(annotation) == (float,):
            kw.update(type=_float_list, metavar=_extra(field).get("metavar", "A,B,..."))
        elif origin is dict:  # parsed by the command
            kw.update(action="append", metavar=_extra(field).get("metavar", "KEY:VALUE"))
        elif annotation in (int, float, str):
            kw.update(type=annotation, metavar=_extra(field).get("metavar", {int: "N", float: "X", str: "VALUE"}[annotation]))
        else:
            raise TypeError(f"{config.__name__}.{name}: no command-line form for {field.annotation!r}; mark it json_schema_extra={{'cli': False}}")
        parser.add_argument(*flags, **kw)


def config_from_args(args: argparse.Namespace, config: type[BaseModel], skip: Iterable[str] = (), **fixed: Any) -> BaseModel:
    """``config`` built from the options :func:`add_config_args` added (absent ones keep their
    defaults) and ``fixed`` values.

    Raises:
        SparsekitError: a value the config rejects, named by its option.
    """
    skip = set(skip)
    values = {n: getattr(args, n) for n in cli_fields(config) if n not in skip and getattr(args, n, None) is not None}
    values.update(fixed)
    try:
        return config(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        field = config.model_fields.get(name)
        option = flags_of(name, field)[0] if field is not None else name
        raise SparsekitError(f"invalid {option}: {err['msg']}", f"see '--help' for {option}") from exc
