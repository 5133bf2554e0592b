"""Turn a model name into a model: zoo entry, ``file.py:factory``, ``pkg.module:factory``,
``torchvision:NAME``, or a saved sparsekit checkpoint."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from sparsekit.errors import InputShapeError, ModelSourceError
from sparsekit.models.spec import InputSpec, InputTensor, parse_input_shape, parse_input_shapes


@dataclass
class LoadedModel:
    """A model ready for the pipeline.

    Attributes:
        model: the module, in eval mode.
        inputs: its input spec (batch dimension first).
        source: how to rebuild it: ``{"kind", "spec", "args"}`` (JSON-serialisable).
        checkpoint: metadata of the sparsekit checkpoint it came from, if any.
    """

    model: nn.Module
    inputs: InputSpec
    source: dict[str, Any]
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.source.get("spec"))


def _load_callable(spec: str):
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ModelSourceError(f"model file '{target}' does not exist", "check the path before ':factory'")
        mod_name = f"sparsekit_user_{path.stem}_{abs(hash(str(path)))}"
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # user code: report whatever it raised
            raise ModelSourceError(f"importing '{target}' failed: {type(exc).__name__}: {exc}", "fix the error in that file") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelSourceError(f"cannot import module '{target}': {exc}", "check the module name and that its package is installed") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ModelSourceError(f"'{target}' has no callable named '{attr}'", "name a function that returns an nn.Module")
    return fn


def _spec_from_factory_result(result: Any) -> tuple[nn.Module, InputSpec | None]:
    model, shapes = (result if isinstance(result, tuple) and len(result) == 2 else (result, None))
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"the factory returned {type(model).__name__}, not an nn.Module", "return a torch.nn.Module (optionally with its input shapes as a tuple)")
    if shapes is None or isinstance(shapes, InputSpec):
        return model, shapes
    tensors = []
    for i, s in enumerate(shapes):
        if isinstance(s, str):
            tensors.append(parse_input_shape(s, i))
        else:
            tensors.append(InputTensor("input" if i == 0 else f"input{i}", tuple(int(d) for d in s)))
    return model, InputSpec(tuple(tensors))


def _from_factory(spec: str, args: dict[str, Any]) -> tuple[nn.Module, InputSpec | None]:
    fn = _load_callable(spec)
    try:
        result = fn(**args)
    except Exception as exc:  # user code
        raise ModelSourceError(f"factory '{spec}' raised {type(exc).__name__}: {exc}", "fix the factory or its --model-arg values") from exc
    return _spec_from_factory_result(result)


def _from_torchvision(name: str, args: dict[str, Any]) -> tuple[nn.Module, InputSpec]:
    try:
        import torchvision.models as tvm
    except Exception as exc:
        raise ModelSourceError(f"torchvision cannot be imported ({type(exc).__name__})", "install a torchvision build that matches your torch, or use a zoo model") from exc
    try:
        model = tvm.get_model(name, weights=None, **args)
    except ValueError as exc:
        raise ModelSourceError(f"torchvision has no model '{name}'", "see torchvision.models.list_models()") from exc
    return model, InputSpec((InputTensor("input", (1, 3, 224, 224)),))


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (CLI ``--model-arg``) into a dict of strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ModelSourceError(f"model argument '{pair}' is not key=value", "write it as --model-arg hidden=512")
        out[key.strip()] = value.strip()
    return out


def is_checkpoint_path(spec: str) -> bool:
    return spec.endswith((".pt", ".pth")) and ":" not in spec


def load_model(spec: str, args: dict[str, Any] | None = None, input_shapes: Sequence[str] | None = None) -> LoadedModel:
    """Build the model that ``spec`` names.

    Args:
        spec: a zoo name (``cnn``), ``path/file.py:factory``, ``pkg.module:factory``,
            ``torchvision:resnet50``, or a sparsekit checkpoint ``*.pt``.
        args: keyword arguments for the zoo entry or factory.
        input_shapes: ``--input-shape`` strings overriding the model's own input spec.

    Raises:
        ModelSourceError: the model cannot be built.
        InputShapeError: no input shape is known, or the model rejects it.
    """
    args = dict(args or {})
    ckpt: dict[str, Any] = {}
    if is_checkpoint_path(spec):
        from sparsekit.models.checkpoint import load_checkpoint

        return _with_inputs(load_checkpoint(spec), input_shapes)
    if spec.startswith("torchvision:"):
        model, inputs = _from_torchvision(spec.split(":", 1)[1], args)
        kind = "torchvision"
    elif ":" in spec:
        model, inputs = _from_factory(spec, args)
        kind = "factory"
        if spec.split(":")[0].endswith(".py"):
            spec = f"{Path(spec.rpartition(':')[0]).expanduser().resolve()}:{spec.rpartition(':')[2]}"
    else:
        from sparsekit.models.zoo import build_zoo_model

        model, inputs, args = build_zoo_model(spec, **args)
        kind = "zoo"
    loaded = LoadedModel(model.eval(), inputs or InputSpec(), {"kind": kind, "spec": spec, "args": args}, ckpt)
    return _with_inputs(loaded, input_shapes)


def _with_inputs(loaded: LoadedModel, input_shapes: Sequence[str] | None) -> LoadedModel:
    if input_shapes:
        loaded.inputs = parse_input_shapes(input_shapes)
    if not loaded.inputs.tensors:
        raise InputShapeError(f"model '{loaded.name}' does not declare its input shape", "pass --input-shape, e.g. --input-shape 1x3x224x224")
    validate_inputs(loaded)
    return loaded


def validate_inputs(loaded: LoadedModel) -> None:
    """Run one forward pass on random inputs to prove the input spec fits the model.

    Raises:
        InputShapeError: the model raised on inputs of this shape.
    """
    import torch

    try:
        with torch.no_grad():
            loaded.model(*loaded.inputs.random(seed=0))
    except Exception as exc:  # the model's own error is the message
        shapes = ", ".join(f"{t.name}:{'x'.join(map(str, t.shape))}" for t in loaded.inputs.tensors)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputShapeError(f"model '{loaded.name}' rejects inputs {shapes}: {first}", "pass the right --input-shape for this model") from exc
