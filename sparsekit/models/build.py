"""Build a model from a source description: zoo entry, ``file.py:factory``, ``pkg.module:factory``,
``torchvision:NAME``, ``hf:DIR`` or a stored Hugging Face class + config.

Building says nothing about inputs beyond what the source declares; :mod:`sparsekit.models.source`
completes the inputs and the calling convention, :mod:`sparsekit.models.checkpoint` restores weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from sparsekit.errors import InputShapeError, ModelSourceError
from sparsekit.input_spec import InputSpec, InputTensor, default_input_name, input_from_tuple, parse_input_shape
from sparsekit.models import hf as hf_adapter
from sparsekit.models.limits import check_declared_sizes, check_model_size
from sparsekit.models.trust import is_code_spec, require_allowed
from sparsekit.models.zoo import build_zoo_model

HF_CONFIG = "hf-config"
"""Source kind of a Hugging Face model rebuilt from its class name and config (no folder needed)."""
MEMORY = "memory"
"""Source kind of an in-memory model the kit cannot rebuild."""


def load_callable(spec: str):
    """The callable named by ``path/file.py:name`` or ``pkg.module:name``.

    Raises:
        ModelSourceError: missing file, import error, or no callable of that name.
    """
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ModelSourceError(f"model file '{target}' does not exist", "check the path before ':factory'")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        mod_name = f"sparsekit_user_{path.stem}_{digest}"
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # user code: report whatever it raised
            sys.modules.pop(mod_name, None)
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


def declared_inputs(shapes: Any) -> InputSpec | None:
    """Inputs as a factory (or ``sk.wrap``) may declare them.

    Accepted: an :class:`InputSpec`; one shape (a sequence of ints); or a list whose items are
    shapes (``(1, 3, 224, 224)``), strings (``"input_ids:1x128:int64:0..30522"``), tuples
    ``(name, shape, dtype[, range])`` or :class:`InputTensor`.

    Raises:
        InputShapeError: an item is none of these.
    """
    if shapes is None or isinstance(shapes, InputSpec):
        return shapes
    if isinstance(shapes, (str, InputTensor)) or (isinstance(shapes, (tuple, list)) and shapes and all(isinstance(d, int) for d in shapes)):
        shapes = [shapes]
    if not isinstance(shapes, (tuple, list)):
        raise InputShapeError(f"input declaration {shapes!r} is not a list of inputs", "declare inputs as a list of shapes, 'name:DxD:dtype' strings or (name, shape, dtype[, range]) tuples")
    tensors = []
    for i, item in enumerate(shapes):
        if isinstance(item, InputTensor):
            tensors.append(item)
        elif isinstance(item, str):
            tensors.append(parse_input_shape(item, i))
        elif isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
            tensors.append(input_from_tuple(item, i))
        elif isinstance(item, (tuple, list)) and item and all(isinstance(d, int) for d in item):
            tensors.append(InputTensor(default_input_name(i), tuple(int(d) for d in item)))
        else:
            raise InputShapeError(f"input declaration {item!r} is not a shape, a 'name:DxD:dtype' string or a (name, shape, dtype[, range]) tuple", "see 'Your own model' in the README for the accepted forms")
    return InputSpec(tuple(tensors))


def _from_factory(spec: str, args: dict[str, Any]) -> tuple[nn.Module, InputSpec | None]:
    fn = load_callable(spec)
    try:
        result = fn(**args)
    except Exception as exc:  # user code
        raise ModelSourceError(f"factory '{spec}' raised {type(exc).__name__}: {exc}", "fix the factory or its --model-arg values") from exc
    model, shapes = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"the factory returned {type(model).__name__}, not an nn.Module", "return a torch.nn.Module (optionally with its inputs: (module, [inputs]))")
    return model, declared_inputs(shapes)


def _from_torchvision(name: str, args: dict[str, Any]) -> tuple[nn.Module, InputSpec]:
    try:
        import torchvision.models as tvm
    except Exception as exc:
        raise ModelSourceError(f"torchvision cannot be imported ({type(exc).__name__})", "install a torchvision build that matches your torch, or use a zoo model") from exc

    check_declared_sizes(args, f"the arguments of torchvision:{name}")
    try:
        check_model_size(lambda: tvm.get_model(name, weights=None, **args), f"torchvision:{name}")
        model = tvm.get_model(name, weights=None, **args)
    except ValueError as exc:
        raise ModelSourceError(f"torchvision has no model '{name}'", "see torchvision.models.list_models()") from exc
    except TypeError as exc:
        raise ModelSourceError(f"torchvision:{name} does not take these arguments: {exc}", "check the --model-arg names") from exc
    return model, InputSpec((InputTensor("input", (1, 3, 224, 224)),))


def resolve_factory_spec(spec: str) -> str:
    """``file.py:factory`` with the file's absolute path (other specs unchanged)."""
    target, sep, attr = spec.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{Path(target).expanduser().resolve()}:{attr}"
    return spec


def build_model(spec: str, args: dict[str, Any] | None = None, hf: dict[str, Any] | None = None) -> tuple[nn.Module, InputSpec | None, dict[str, Any]]:
    """Build the model ``spec`` names (random or pretrained weights, as the source gives them).

    Args:
        spec: zoo name, ``path/file.py:factory``, ``pkg.module:factory``, ``torchvision:NAME`` or ``hf:DIR``.
        args: keyword arguments of the zoo entry / factory / torchvision builder; for ``hf:DIR``,
            config overrides plus ``architecture`` and ``attn_implementation``.
        hf: a stored Hugging Face record (:func:`sparsekit.models.hf.hf_record`): rebuild from it
            instead of reading ``spec`` (used when restoring checkpoints).

    Returns:
        ``(model in eval mode, declared inputs or None, source)`` where ``source`` is the
        JSON-serialisable ``{"kind", "spec", "args"[, "hf"]}`` that rebuilds it.

    Raises:
        ModelSourceError: the model cannot be built.
    """
    args = dict(args or {})
    if hf is not None:
        model = hf_adapter.build_from_record(hf)
        return model, None, {"kind": HF_CONFIG, "spec": spec, "args": args, "hf": hf}
    if spec.startswith(hf_adapter.PREFIX):
        model = hf_adapter.load_hf_folder(spec, args)
        folder = hf_adapter.hf_folder(spec)
        return model, None, {"kind": "hf", "spec": f"{hf_adapter.PREFIX}{folder}", "args": args, "hf": hf_adapter.hf_record(model)}
    if spec.startswith("torchvision:"):
        model, inputs = _from_torchvision(spec.split(":", 1)[1], args)
        return model.eval(), inputs, {"kind": "torchvision", "spec": spec, "args": args}
    if ":" in spec:
        model, inputs = _from_factory(spec, args)
        return model.eval(), inputs, {"kind": "factory", "spec": resolve_factory_spec(spec), "args": args}

    model, inputs, args = build_zoo_model(spec, **args)
    return model.eval(), inputs, {"kind": "zoo", "spec": spec, "args": args}


def rebuild_from_source(source: dict[str, Any], origin: str = "a file") -> nn.Module:
    """A fresh model from a recorded ``source`` (weights as the source builds them).

    A recorded source is data: a zoo entry is built with its arguments checked, a Hugging Face
    record or ``hf:DIR`` with transformers' own classes (no remote code unless the user allowed
    it), and the sizes either declares are checked before anything is allocated
    (:mod:`sparsekit.models.limits`). Code (``file.py:factory``, ``pkg.module:factory``) runs only
    when the user named that same source in this invocation (:mod:`sparsekit.models.trust`); the
    recorded ``kind`` is not trusted, the spec itself decides.

    Args:
        source: ``{"kind", "spec", "args"[, "hf"]}`` as :func:`build_model` returns it.
        origin: what recorded the source, for messages (``checkpoint 'x.pt'``).

    Raises:
        ModelSourceError: the source is an in-memory model, malformed, or cannot be built any more.
        UntrustedSourceError: the source names code the user did not name.
        ResourceLimitError: the sizes it declares are past the limits.
    """
    kind, spec, args = source.get("kind"), source.get("spec"), source.get("args", {})
    if kind == MEMORY:
        raise ModelSourceError(f"the checkpoint holds an in-memory {spec} whose architecture was not recorded", "wrap the model with a source (sk.wrap(model, inputs, source='file.py:factory'))")
    if not isinstance(spec, str) or not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ModelSourceError(f"{origin} records a malformed model source", "re-create the file with sparsekit")
    if kind in ("hf", HF_CONFIG) and source.get("hf") is not None:
        if not isinstance(source["hf"], dict):
            raise ModelSourceError(f"{origin} records a malformed Hugging Face model", "re-create the file with sparsekit")
        return build_model(spec, args, hf=source["hf"])[0]
    if is_code_spec(spec):
        require_allowed(spec, origin)
    return build_model(spec, args)[0]
