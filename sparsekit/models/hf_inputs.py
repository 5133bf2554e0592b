"""Default inputs of Hugging Face models, declared from their config.

As Hugging Face Optimum's per-architecture ONNX configs do, each kind of model declares its
inputs (names, dtypes, shapes from the config, integer value ranges, dynamic axes), so that a
``save_pretrained`` folder exports with no ``--input-shape``. The kind is chosen by the tensors
``forward`` takes (the first entry of :data:`KINDS` whose required parameters it has):

=================  ==============================================================================
kind               inputs (B: batch, dynamic everywhere)
=================  ==============================================================================
speech seq2seq     ``input_features [B, num_mel_bins, 2 * max_source_positions]`` float (Whisper:
                   the encoder takes exactly that many frames), + the decoder inputs below
text seq2seq       ``input_ids``, ``attention_mask [B, sequence]``, + the decoder inputs below
                   (T5, BART)
(decoder inputs)   ``decoder_input_ids``, ``decoder_attention_mask [B, decoder_sequence]`` int64
                   (the decoder mask keeps transformers' mask code off ``aten::diff``)
audio              ``input_values [B, sequence]`` float (raw samples, default 16000), +
                   ``attention_mask [B, sequence]`` where
                   the config's feature extractor makes one (``feat_extract_norm="layer"``)
text               ``input_ids``, ``attention_mask`` [, ``token_type_ids``] ``[B, sequence]``
                   (BERT, ALBERT, GPT-2, Llama)
vision             ``pixel_values [B, num_channels, image_size, image_size]`` (ViT, ConvNeXt,
                   Swin, CLIP vision)
=================  ==============================================================================

Token ids are drawn from ``[0, vocab_size)``, masks from ``{0, 1}``. A model none of these fits
gets :func:`input_examples`: its own input names, each with an ``--input-shape`` example.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from sparsekit.input_spec import InputSpec, InputTensor
from sparsekit.models.adapter import forward_parameters

SEQUENCE = "sequence"
"""Label of a text input's token axis and of a raw audio input's sample axis (``--seq-len`` sets
them; Optimum labels both ``sequence_length``)."""
DECODER_SEQUENCE = "decoder_sequence"
"""Label of a decoder input's token axis."""
DEFAULT_SEQ_LEN = 128
DEFAULT_SAMPLES = 16000
"""One second of audio at 16 kHz, the rate of Wav2Vec2-style feature extractors."""
# config attributes that bound each integer input: values in [0, attribute)
_RANGES = {
    "input_ids": ("vocab_size",), "decoder_input_ids": ("vocab_size",),
    "token_type_ids": ("type_vocab_size",), "position_ids": ("max_position_embeddings", "n_positions"),
}
_MASKS = ("attention_mask", "decoder_attention_mask")
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
_NOT_INPUTS = ("head_mask", "decoder_head_mask", "cross_attn_head_mask")


def config_int(config, *names: str) -> int | None:
    """The first of ``names`` that ``config`` holds as a positive int, else None."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def input_ranges(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Value ranges ``[low, high)`` of the model's integer inputs that its config bounds."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    out = {name: (0, 2) for name in _MASKS}
    for name, attrs in _RANGES.items():
        high = config_int(config, *attrs)
        if high:
            out[name] = (0, high)
    return out


def _ids(name: str, shape: tuple[int, int], ranges: dict, label: str) -> InputTensor:
    high = ranges.get(name, (0, None))[1]
    return InputTensor(name, shape, "int64", high, 0, ((1, label),))


def _text_part(config, params: list[str], batch: int, seq: int | None, ranges: dict) -> list[InputTensor]:
    seq = int(seq or min(DEFAULT_SEQ_LEN, config_int(config, "max_position_embeddings", "n_positions") or DEFAULT_SEQ_LEN))
    names = ["input_ids"] + [n for n in ("attention_mask",) if n in params]
    if "token_type_ids" in params and config_int(config, "type_vocab_size"):
        names.append("token_type_ids")
    return [_ids(n, (batch, seq), ranges, SEQUENCE) for n in names]


def _decoder_part(config, params: list[str], batch: int, ranges: dict) -> list[InputTensor]:
    seq = min(DEFAULT_SEQ_LEN, config_int(config, "max_target_positions", "max_position_embeddings", "n_positions") or DEFAULT_SEQ_LEN)
    names = ["decoder_input_ids"] + [n for n in ("decoder_attention_mask",) if n in params]
    return [_ids(n, (batch, seq), ranges, DECODER_SEQUENCE) for n in names]


def _text(config, params, batch, seq, ranges):
    return _text_part(config, params, batch, seq, ranges)


def _text_seq2seq(config, params, batch, seq, ranges):
    return _text_part(config, params, batch, seq, ranges) + _decoder_part(config, params, batch, ranges)


def _speech_seq2seq(config, params, batch, seq, ranges):
    mels, positions = config_int(config, "num_mel_bins"), config_int(config, "max_source_positions")
    if not (mels and positions):
        return None  # not Whisper's layout: the user declares it
    features = InputTensor("input_features", (batch, mels, 2 * positions))  # two frames per encoder position (stride-2 conv)
    return [features] + _decoder_part(config, params, batch, ranges)


def _audio(config, params, batch, seq, ranges):
    samples = int(seq or DEFAULT_SAMPLES)
    tensors = [InputTensor("input_values", (batch, samples), "float32", None, 0, ((1, SEQUENCE),))]
    if "attention_mask" in params and getattr(config, "feat_extract_norm", None) == "layer":
        tensors.append(InputTensor("attention_mask", (batch, samples), "int64", 2, 0, ((1, SEQUENCE),)))
    return tensors


def _vision(config, params, batch, seq, ranges):
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "image_size", None)
    height, width = (size, size) if isinstance(size, int) else tuple(size or (224, 224))
    channels = config_int(vision, "num_channels") or 3
    return [InputTensor("pixel_values", (batch, channels, int(height), int(width)))]


Builder = Callable[[Any, list, int, "int | None", dict], "list[InputTensor] | None"]
KINDS: tuple[tuple[str, tuple[str, ...], Builder], ...] = (
    ("speech seq2seq", ("input_features", "decoder_input_ids"), _speech_seq2seq),
    ("text seq2seq", ("input_ids", "decoder_input_ids"), _text_seq2seq),
    ("audio", ("input_values",), _audio),
    ("text", ("input_ids",), _text),
    ("vision", ("pixel_values",), _vision),
)
"""``(kind, forward parameters it needs, builder)``, most specific first."""


def default_inputs(model: nn.Module, seq_len: int | None = None, batch: int = 1) -> InputSpec | None:
    """The inputs a Hugging Face model takes by default, from its ``forward`` and config.

    Args:
        model: a ``transformers`` ``PreTrainedModel``.
        seq_len: the size of the ``sequence`` axis of text inputs (default 128, or the model's
            maximum positions if fewer), or of the ``sequence`` axis of raw audio (samples, default 16000).
        batch: the batch size.

    Returns:
        The spec of the first kind in :data:`KINDS` that ``forward`` fits, or None when none does
        (or the config lacks the sizes that kind needs).
    """
    config = model.config
    params = forward_parameters(model)[1]
    ranges = input_ranges(model)
    for _, needs, build in KINDS:
        if all(n in params for n in needs):
            tensors = build(config, params, batch, seq_len, ranges)
            return InputSpec(tuple(tensors)) if tensors else None
    return None


def complete_inputs(model: nn.Module, spec: InputSpec) -> InputSpec:
    """``spec`` with what the config knows added: integer ranges where none was given, and a
    dynamic ``sequence`` axis on 2-D text inputs (``input_ids``, ``attention_mask``...)."""
    ranges = input_ranges(model)
    for t in spec.tensors:
        new = t
        if t.is_integer and t.high is None and t.name in ranges:
            new = new.with_range(*ranges[t.name])
        if t.name in _TEXT_INPUTS and len(t.shape) == 2 and not t.dynamic:
            new = new.with_dynamic(1, SEQUENCE)
        if new is not t:
            spec = spec.replace(new)
    return spec


def _example(name: str, config, ranges: dict) -> str:
    """An ``--input-shape`` value for an input called ``name`` (batch 1)."""
    if name in ranges or name.endswith(("_ids", "_mask")):
        low, high = ranges.get(name, (0, "VOCAB_SIZE" if name.endswith("_ids") else 2))
        return f"{name}:1x{DEFAULT_SEQ_LEN}:int64:{low}..{high}"
    if name == "pixel_values" or "image" in name:
        return f"{name}:1x3x224x224"
    if name == "input_values":
        return f"{name}:1x{DEFAULT_SAMPLES}"
    if name == "input_features":
        mels = config_int(config, "num_mel_bins", "feature_size") or 80
        return f"{name}:1x{mels}x3000"
    return f"{name}:1xD"


def input_examples(model: nn.Module) -> list[str]:
    """An ``--input-shape`` example for each tensor input the model's ``forward`` names (ids and
    masks with their config ranges, images, audio), for the error that asks for inputs."""
    config = getattr(model, "config", None)
    positional, named, _ = forward_parameters(model)
    ranges = input_ranges(model)
    if config is not None:  # a transformers model: its tensor inputs, not its options
        names = [n for n in named if n.endswith(("_ids", "_mask", "_values", "_features")) and n not in _NOT_INPUTS]
    else:
        names = positional
    return [_example(n, config, ranges) for n in names]
