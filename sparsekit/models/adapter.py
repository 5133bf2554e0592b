"""How the kit calls a model: inputs matched to ``forward``'s parameters by name, outputs as plain tensors.

Every stage below the model layer calls ``model(*tensors)`` with the tensors in input-spec order
and reads back a tensor or a tuple of tensors (ONNX export, parity, calibration loops, FLOP
counting, benchmarks). A model that already works that way is left untouched. Any other model
(an input that is not ``forward``'s positional parameter at that place, such as GPT-2's
``attention_mask``; an output that is a ``ModelOutput``, dict, dataclass or nested container;
fixed keyword arguments such as ``use_cache=False``) gets an instance-level ``forward``:
positional tensors are passed by keyword under their input names, the output is flattened
(:mod:`sparsekit.models.outputs`) and ``None`` entries dropped. This is the model-patcher pattern of
Hugging Face Optimum's exporters, kept for the model's lifetime so that every stage sees the same
plain model. Called with keywords only, an adapted model runs its own ``forward`` untouched (so
library code such as ``generate`` still works).
"""

from __future__ import annotations

import inspect
import logging
import types
from dataclasses import dataclass
from typing import Any

from torch import nn

from sparsekit.errors import InputShapeError, SparsekitError
from sparsekit.models.outputs import flatten_outputs, is_plain
from sparsekit.input_spec import InputSpec, is_default_name

log = logging.getLogger(__name__)

_ATTR = "_sparsekit_call"


@dataclass(frozen=True)
class CallSpec:
    """How a model is called and what it returns.

    Attributes:
        names: the input names, in the order the kit passes tensors.
        by_keyword: tensors are passed as ``forward(name=tensor, ...)``; otherwise by position.
        fixed: constant keyword arguments, e.g. ``(("use_cache", False),)``.
        ones_like: ``(keyword, input)`` pairs: the keyword gets a tensor of ones shaped like that
            input (a full attention mask where none is an input).
        outputs: names of the flattened outputs (``logits``, ``last_hidden_state``...).
        adapted: whether the model's ``forward`` was replaced to follow this spec.
    """

    names: tuple[str, ...]
    by_keyword: bool
    fixed: tuple[tuple[str, Any], ...] = ()
    ones_like: tuple[tuple[str, str], ...] = ()
    outputs: tuple[str, ...] = ()
    adapted: bool = False

    def kwargs(self, tensors) -> dict[str, Any]:
        """Keyword arguments for the model's own ``forward`` from tensors in spec order."""
        import torch

        kw = dict(zip(self.names, tensors))
        for key, like in self.ones_like:
            kw[key] = torch.ones_like(kw[like])
        kw.update(self.fixed)
        return kw


def forward_parameters(model: nn.Module) -> tuple[list[str], list[str], bool]:
    """``(positional parameter names, all named parameters, takes *args)`` of ``type(model).forward``."""
    sig = inspect.signature(type(model).forward)
    params = list(sig.parameters.values())[1:]  # drop self
    kinds = inspect.Parameter
    positional = [p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    named = [p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    return positional, named, any(p.kind == kinds.VAR_POSITIONAL for p in params)


def _by_keyword(model: nn.Module, names: list[str]) -> bool:
    """Whether inputs must go by keyword; raises when a name matches no parameter."""
    positional, named, varargs = forward_parameters(model)
    known = [n in named for n in names]
    if all(known) and names:
        return names != positional[: len(names)]
    if not any(known) and (varargs or all(is_default_name(n) for n in names)):
        return False  # unnamed inputs (input, input1, ...) go by position, in order
    bad = next(n for n, k in zip(names, known) if not k)
    cls = type(model).__name__
    raise InputShapeError(
        f"input '{bad}' is not a parameter of {cls}.forward (its parameters: {', '.join(named) or 'none'})",
        "name each input after a forward parameter, e.g. --input-shape " + (f"{named[0]}:..." if named else "1x3x224x224 (unnamed inputs go by position)"),
    )


def _adapted_forward(self, *args, **kwargs):
    """Instance ``forward`` of an adapted model (see the module docstring)."""
    call: CallSpec = self.__dict__[_ATTR]
    if not args:  # keyword call: the model's own behaviour
        return type(self).forward(self, **kwargs)
    if len(args) > len(call.names):
        raise TypeError(f"{type(self).__name__} takes {len(call.names)} input tensors ({', '.join(call.names)}), got {len(args)}")
    kw = call.kwargs(args)
    kw.update(kwargs)
    out = type(self).forward(self, **kw) if call.by_keyword else type(self).forward(self, *args, **{k: v for k, v in kw.items() if k not in call.names})
    tensors = [t for _, t in flatten_outputs(out)]
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def remove_adapter_(model: nn.Module) -> None:
    """Give ``model`` back its own ``forward`` (no-op if it was not adapted)."""
    if model.__dict__.pop(_ATTR, None) is not None:
        model.__dict__.pop("forward", None)


def call_spec(model: nn.Module) -> CallSpec | None:
    """The :class:`CallSpec` of an adapted model, else None."""
    return model.__dict__.get(_ATTR)


def adapt_(model: nn.Module, spec: InputSpec, fixed: dict[str, Any] | None = None, ones_like: dict[str, str] | None = None) -> CallSpec:
    """Check that ``spec`` fits ``model`` (one forward pass) and adapt its calling convention if needed.

    Args:
        model: the module (its ``forward`` may be replaced at instance level, see the module docstring).
        spec: its inputs; names must be ``forward`` parameters (or all unnamed, passed by position).
        fixed: constant keyword arguments (e.g. ``{"use_cache": False}``).
        ones_like: keyword -> input name: pass ones shaped like that input (a full attention mask).

    Returns:
        The call spec, with the output names read from one forward pass on random inputs.

    Raises:
        InputShapeError: an input name is not a ``forward`` parameter, or the model raised on inputs of this shape.
        ModelSourceError: the output cannot be flattened into tensors.
    """
    import torch

    remove_adapter_(model)
    names = spec.names
    _, named, _ = forward_parameters(model)
    fixed = {k: v for k, v in (fixed or {}).items() if k in named and k not in names}
    ones_like = {k: v for k, v in (ones_like or {}).items() if k in named and k not in names and v in names}
    by_keyword = _by_keyword(model, names)
    probe = CallSpec(tuple(names), by_keyword, tuple(fixed.items()), tuple(ones_like.items()))
    tensors = spec.random(seed=0)
    try:
        with torch.no_grad():
            if by_keyword:
                out = model(**probe.kwargs(tensors))
            else:
                out = model(*tensors, **{k: v for k, v in probe.kwargs(tensors).items() if k not in names})
    except SparsekitError:
        raise
    except Exception as exc:  # the model's own error is the message
        shapes = ", ".join(f"{t.name}:{'x'.join(map(str, t.shape))}" for t in spec.tensors)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputShapeError(f"model {type(model).__name__} rejects inputs {shapes}: {first}", "pass the right --input-shape for this model") from exc
    outputs = tuple(name for name, _ in flatten_outputs(out))
    needed = by_keyword or bool(fixed) or bool(ones_like) or not is_plain(out)
    call = CallSpec(probe.names, by_keyword, probe.fixed, probe.ones_like, outputs, needed)
    if needed:
        model.__dict__[_ATTR] = call
        model.__dict__["forward"] = types.MethodType(_adapted_forward, model)
        log.info("calling %s with inputs %s by %s; outputs %s", type(model).__name__, names, "keyword" if by_keyword else "position", list(outputs))
    return call


def output_names(model: nn.Module, spec: InputSpec) -> list[str]:
    """Names of the model's flattened outputs (from its call spec, else from one forward pass)."""
    import torch

    call = call_spec(model)
    if call is not None:
        return list(call.outputs)
    with torch.no_grad():
        out = model(*spec.random(seed=0))
    return [name for name, _ in flatten_outputs(out)]
