"""The built-in model zoo: named entries that build a model and its input spec.

Each entry has defaults that are small (seconds on a 2-core CPU) unless the entry is a full-size
reference (``resnet50``, ``bert-base``). Any default can be overridden by keyword.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from sparsekit.errors import ModelSourceError
from sparsekit.input_spec import InputSpec, InputTensor
from sparsekit.models.limits import MAX_LAYERS, MAX_SIZE, check_positive_size, check_model_size
from sparsekit.models.zoo_cnn import WideResNet, ResNet50
from sparsekit.models.zoo_minilm import MiniLMEncoder
from sparsekit.models.zoo_mlp import MLP
from sparsekit.models.zoo_transformer import BertEncoder


@dataclass(frozen=True)
class ZooEntry:
    """A built-in model.

    Attributes:
        name: the name users type.
        description: one line for ``sparsekit models``.
        defaults: keyword arguments and their default values (types are taken from these).
        build: ``build(**kwargs) -> (model, InputSpec)``.
        pretrained: the entry loads packaged weights (its size is fixed; it is not counted on the meta device).
    """

    name: str
    description: str
    defaults: dict[str, Any]
    build: Callable[..., tuple[nn.Module, InputSpec]]
    pretrained: bool = False


ZOO: dict[str, ZooEntry] = {}


def register(name: str, description: str, pretrained: bool = False, **defaults: Any):
    """Decorator registering a zoo builder under ``name``."""

    def wrap(fn: Callable[..., tuple[nn.Module, InputSpec]]):
        ZOO[name] = ZooEntry(name, description, defaults, fn, pretrained)
        return fn

    return wrap


@register("mlp", "3-layer MLP, input [B, 256] (smallest model with eligible Linear layers)", in_features=256, hidden=1024, depth=2, classes=10, batch=1)
def _mlp(in_features, hidden, depth, classes, batch):
    return MLP(in_features, hidden, depth, classes), InputSpec((InputTensor("input", (batch, in_features)),))


@register("cnn", "small ResNet-style CNN with wide stages (64-128-256 ch), 3x32x32 images", width=64, blocks=1, image_size=32, classes=10, in_channels=3, batch=1)
def _cnn(width, blocks, image_size, classes, in_channels, batch):
    model = WideResNet((width, width * 2, width * 4), blocks, classes, in_channels)
    return model, InputSpec((InputTensor("input", (batch, in_channels, image_size, image_size)),))


@register("resnet50", "ResNet-50-shaped CNN at full size (25.6 M params), 3x224x224 images", width=64, image_size=224, classes=1000, batch=1)
def _resnet50(width, image_size, classes, batch):
    return ResNet50(width, classes=classes), InputSpec((InputTensor("input", (batch, 3, image_size, image_size)),))


@register("bert", "small BERT-style encoder (2 layers, hidden 256, FFN 1024), token ids [B, 64]; attention=matmul|sdpa", vocab=1000, hidden=256, layers=2, heads=4, ffn=1024, seq=64, classes=2, batch=1, attention="matmul")
def _bert(vocab, hidden, layers, heads, ffn, seq, classes, batch, attention):
    model = BertEncoder(vocab, hidden, layers, heads, ffn, max(512, seq), classes, attention)
    return model, InputSpec((InputTensor("input_ids", (batch, seq), "int64", vocab),))


@register("bert-base", "BERT-base-shaped encoder at full size (12 layers, hidden 768, FFN 3072), token ids [B, 128]", vocab=30522, hidden=768, layers=12, heads=12, ffn=3072, seq=128, classes=2, batch=1, attention="matmul")
def _bert_base(vocab, hidden, layers, heads, ffn, seq, classes, batch, attention):
    return _bert(vocab, hidden, layers, heads, ffn, seq, classes, batch, attention)


@register("minilm", "pretrained all-MiniLM-L6-v2 sentence encoder (6 layers, hidden 384), token ids + mask [B, 128] -> unit embedding [B, 384]; needs the 'minilm' extra", pretrained=True, seq=128, batch=1)
def _minilm(seq, batch):
    model = MiniLMEncoder.pretrained()
    vocab = model.bert.config.vocab_size
    return model, InputSpec((InputTensor("input_ids", (batch, seq), "int64", vocab), InputTensor("attention_mask", (batch, seq), "int64", 2)))


def _coerce(entry: ZooEntry, key: str, value: Any) -> Any:
    if key not in entry.defaults:
        known = ", ".join(sorted(entry.defaults))
        raise ModelSourceError(f"zoo model '{entry.name}' has no argument '{key}'", f"use one of: {known}")
    default = entry.defaults[key]
    want = type(default)
    if isinstance(value, want) and (want is bool) == isinstance(value, bool):
        return value
    if want is str:
        return str(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and want is not bool:
        try:
            return want(value)
        except ValueError:
            pass
    raise ModelSourceError(f"argument {key}={value!r} of '{entry.name}' is not a {want.__name__}", f"give {key} as a {want.__name__}, e.g. {key}={default}")


def _check_sizes(entry: ZooEntry, kwargs: dict[str, Any]) -> None:
    """Every integer argument of a zoo entry is a size or count: positive and below the limits.

    Raises:
        ResourceLimitError: an integer argument outside ``[1, MAX_SIZE]`` (``[1, MAX_LAYERS]`` for counts).
    """
    for key, value in kwargs.items():
        if isinstance(value, int) and not isinstance(value, bool):
            upper = MAX_LAYERS if key in ("layers", "depth", "blocks", "heads") else MAX_SIZE
            check_positive_size(value, f"argument {key} of zoo model '{entry.name}'", upper)


def build_zoo_model(name: str, **overrides: Any) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """Build zoo model ``name`` with ``overrides`` applied over its defaults.

    Returns:
        ``(model, input_spec, resolved_kwargs)``; the model is in eval mode.

    Raises:
        ModelSourceError: unknown name, unknown argument, or an argument of the wrong type.
    """
    if name not in ZOO:
        raise ModelSourceError(f"'{name}' is not a built-in model", f"use one of: {', '.join(sorted(ZOO))}, or path/to/file.py:factory")

    entry = ZOO[name]
    kwargs = dict(entry.defaults)
    kwargs.update({k: _coerce(entry, k, v) for k, v in overrides.items()})
    _check_sizes(entry, kwargs)
    try:
        if not entry.pretrained:  # a pretrained entry's sizes are its package's, not arguments
            check_model_size(lambda: entry.build(**kwargs), f"zoo model '{name}' with {overrides}")
        model, spec = entry.build(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ModelSourceError(f"zoo model '{name}' cannot be built with {overrides}: {exc}", "change the --model-arg values") from exc
    return model.eval(), spec, kwargs
