"""Turn a model name (zoo entry, ``file.py:factory``, ``pkg.module:factory``, ``torchvision:NAME``,
``hf:DIR``, a sparsekit checkpoint) or an in-memory module into a model ready for the pipeline:
inputs complete (shapes, integer ranges, dynamic axes) and a calling convention every stage can use
(see :mod:`sparsekit.models.adapter`)."""

from __future__ import annotations

import re
from typing import Any, Sequence

from torch import nn

from sparsekit.errors import InputShapeError, ModelSourceError
from sparsekit.models.build import HF_CONFIG, MEMORY, build_model, declared_inputs, resolve_factory_spec
from sparsekit.models.loaded import LoadedModel
from sparsekit.input_spec import InputSpec, apply_dynamic_axes, parse_input_shapes
from sparsekit.models import hf
from sparsekit.models.adapter import adapt_
from sparsekit.models.checkpoint import load_checkpoint
from sparsekit.models.hf import PREFIX
from sparsekit.models.trust import trust_sources


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def parse_scalar(text: str) -> int | float | bool | str:
    """``"512"`` -> 512, ``"0.1"`` / ``"1e-3"`` -> float, ``"true"``/``"false"`` (any case) -> bool, else the string."""
    value = text.strip()
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (CLI ``--model-arg``) into typed scalars (int, float, bool, str)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ModelSourceError(f"model argument '{pair}' is not key=value", "write it as --model-arg hidden=512")
        out[key.strip()] = parse_scalar(value)
    return out


def is_checkpoint_path(spec: str) -> bool:
    return spec.endswith((".pt", ".pth")) and ":" not in spec


def load_model(
    spec: str,
    args: dict[str, Any] | None = None,
    input_shapes: Sequence[str] | None = None,
    seq_len: int | None = None,
    dynamic_axes: Sequence[str] | None = None,
    model_sources: Sequence[str] = (),
) -> LoadedModel:
    """Build the model that ``spec`` names, with complete inputs and a plain calling convention.

    Args:
        spec: a zoo name (``cnn``), ``path/file.py:factory``, ``pkg.module:factory``,
            ``torchvision:resnet50``, ``hf:DIR`` (a ``save_pretrained`` folder) or a sparsekit
            checkpoint ``*.pt`` (which restores its inputs unless they are given here).
        args: keyword arguments for the zoo entry or factory (config overrides for ``hf:DIR``).
        input_shapes: ``--input-shape`` strings replacing the model's own input spec.
        seq_len: size of every input axis labelled ``sequence`` (Hugging Face text inputs).
        dynamic_axes: ``NAME:AXIS[=LABEL]`` strings marking more input axes dynamic.
        model_sources: factories (``file.py:factory``) you trust a checkpoint to rebuild its
            model with (a checkpoint's recorded code is never run otherwise:
            :mod:`sparsekit.models.trust`).

    Raises:
        ModelSourceError: the model cannot be built.
        UntrustedSourceError: a checkpoint names code that is not in ``model_sources``.
        InputShapeError: no input shape is known, an input is not a ``forward`` parameter, or the
            model rejects the inputs.
    """
    if is_checkpoint_path(spec):
        with trust_sources(*model_sources):
            loaded = load_checkpoint(spec)
    else:
        model, inputs, source = build_model(spec, args)
        loaded = LoadedModel(model, inputs or InputSpec(), source)
    return prepare_(loaded, input_shapes, seq_len, dynamic_axes)


def wrap(
    model: nn.Module,
    inputs: Any = None,
    source: str | None = None,
    args: dict[str, Any] | None = None,
    seq_len: int | None = None,
    dynamic_axes: Sequence[str] | None = None,
) -> LoadedModel:
    """Make an in-memory model ready for the pipeline, without wrapper code.

    The module is adapted in place (Conv1D layers become the equal Linear; ``forward`` takes the
    inputs in order and returns plain tensors when called positionally; see
    :mod:`sparsekit.models.adapter`).

    Args:
        model: any ``nn.Module`` (a Hugging Face ``PreTrainedModel`` included).
        inputs: an :class:`InputSpec`, or a list of shapes, ``"name:DxD:dtype[:LOW..HIGH]"``
            strings or ``(name, shape, dtype[, range])`` tuples; None for a Hugging Face model's
            defaults.
        source: how to rebuild the architecture for checkpoints: a zoo name or ``file.py:factory``
            (with ``args``) that builds this model. Hugging Face models are rebuilt from their
            class and config without it; other models without it cannot be checkpointed.
        args: the factory / zoo arguments that built it.
        seq_len: size of axes labelled ``sequence``.
        dynamic_axes: ``NAME:AXIS[=LABEL]`` strings.

    Raises:
        InputShapeError: no inputs known, or they do not fit the model.
    """
    args = dict(args or {})
    if source is not None:
        recorded: dict[str, Any] = {"kind": _source_kind(source), "spec": resolve_factory_spec(source), "args": args}
    elif hf.is_hf_model(model):
        recorded = {"kind": HF_CONFIG, "spec": type(model).__name__, "args": {}, "hf": hf.hf_record(model)}
    else:
        recorded = {"kind": MEMORY, "spec": type(model).__name__, "args": {}}
    loaded = LoadedModel(model.eval(), declared_inputs(inputs) or InputSpec(), recorded)
    return prepare_(loaded, None, seq_len, dynamic_axes)


def _source_kind(spec: str) -> str:
    if spec.startswith(PREFIX):
        return "hf"
    if spec.startswith("torchvision:"):
        return "torchvision"
    return "factory" if ":" in spec else "zoo"


def _no_inputs_error(loaded: LoadedModel) -> InputShapeError:
    """The error for a model whose inputs nothing declares: its own input names, an example each."""
    examples = hf.input_examples(loaded.model)
    if not examples:
        return InputShapeError(f"model '{loaded.name}' does not declare its input shape, and its forward names no inputs", "pass --input-shape, batch first, e.g. --input-shape 1x3x224x224")
    names = ", ".join(e.split(":", 1)[0] for e in examples)
    return InputShapeError(
        f"model '{loaded.name}' does not declare its input shape (its inputs: {names})",
        "pass one --input-shape per input, batch first, e.g. " + " ".join(f"--input-shape {e}" for e in examples),
    )


def _resolve_inputs(loaded: LoadedModel, input_shapes, seq_len, dynamic_axes) -> InputSpec:
    is_hf = hf.is_hf_model(loaded.model)
    spec = parse_input_shapes(input_shapes) if input_shapes else loaded.inputs
    if not spec.tensors and is_hf:
        spec = hf.default_inputs(loaded.model, seq_len) or spec
    if not spec.tensors:
        raise _no_inputs_error(loaded)
    spec.check_size(f"the inputs of '{loaded.name}'")
    if is_hf:
        spec = hf.complete_inputs(loaded.model, spec)
    if dynamic_axes:
        spec = apply_dynamic_axes(spec, dynamic_axes)
    if seq_len:
        if hf.SEQUENCE not in spec.dynamic_sizes():
            raise InputShapeError(f"--seq-len sets the axes labelled '{hf.SEQUENCE}', and no input of '{loaded.name}' has one", "mark the axis with --dynamic-axis NAME:1=sequence, or give --input-shape")
        spec = spec.resized(sizes={hf.SEQUENCE: int(seq_len)})
        spec.check_size(f"the inputs of '{loaded.name}'")
    return spec


def prepare_(loaded: LoadedModel, input_shapes: Sequence[str] | None = None, seq_len: int | None = None, dynamic_axes: Sequence[str] | None = None) -> LoadedModel:
    """Complete ``loaded``'s inputs and adapt its model so that every stage can call it.

    Converts ``transformers.Conv1D`` layers to the equal ``nn.Linear``, resolves the inputs
    (given shapes, else declared ones, else a Hugging Face model's defaults; ranges and dynamic axes
    from its config), and runs one forward pass to check them and read the output names.

    Raises:
        InputShapeError: no inputs, a name that is not a ``forward`` parameter, or the model rejects them.
    """
    converted = hf.conv1d_to_linear_(loaded.model)
    if converted:
        loaded.notes.append(f"{len(converted)} transformers Conv1D layers run as the equal nn.Linear (weight transposed)")
    loaded.inputs = _resolve_inputs(loaded, input_shapes, seq_len, dynamic_axes)
    fixed, ones_like = hf.call_conventions(loaded.model, loaded.inputs) if hf.is_hf_model(loaded.model) else ({}, {})
    call = adapt_(loaded.model, loaded.inputs, fixed, ones_like)
    loaded.inputs.warn_unknown_ranges(loaded.name)
    if call.adapted:
        how = "by keyword" if call.by_keyword else "by position"
        extra = ", ".join([f"{k}={v}" for k, v in call.fixed] + [f"{k}=ones" for k, _ in call.ones_like])
        loaded.notes.append(f"inputs passed {how} ({', '.join(call.names)}){'; ' + extra if extra else ''}; outputs {', '.join(call.outputs)}")
    return loaded

