"""INT8 / FP8 post-training quantization on top of 2:4 sparsity, in the order that keeps 2:4.

The chain is sparsify -> quantize -> (QAT) -> ONNX, WITHOUT ``mts.export`` in between: the
sparsity masks stay enforced through quantization and training, and the exported weights keep
2:4 behind their Q/DQ pairs. (``mts.export`` before quantization is fine for PTQ but QAT then
destroys the pattern.)
"""

from __future__ import annotations

import logging
from typing import Sequence

from torch import nn

from sparsekit._quiet import quiet_modelopt
from sparsekit.errors import CalibrationDataError, SparsekitError
from sparsekit.models.calib import forward_loop
from sparsekit._lazy import lazy_import

mtq = lazy_import("modelopt.torch.quantization")
mtq_calib = lazy_import("modelopt.torch.quantization.calib")
mtq_model_calib = lazy_import("modelopt.torch.quantization.model_calib")
mtq_nn = lazy_import("modelopt.torch.quantization.nn")

log = logging.getLogger(__name__)

QUANT_CONFIGS = {"int8": "INT8_DEFAULT_CFG", "fp8": "FP8_DEFAULT_CFG"}
CALIB_METHODS = ("max", "entropy", "percentile", "mse")
"""Activation calibration: ``max`` (ModelOpt's default), or from a 2048-bin histogram of each
activation (ModelOpt's ``HistogramCalibrator``): ``entropy`` (KL), ``percentile`` (99.99th),
``mse``. Weights always use per-channel max."""


FLOAT_NORMS = ("nn.LayerNorm", "nn.InstanceNorm1d", "nn.InstanceNorm2d", "nn.InstanceNorm3d")
"""Normalisation layers whose input ModelOpt's INT8/FP8 defaults quantize and the kit does not.
TensorRT runs normalisation in float, and a transformer's LayerNorm input is the residual
stream, whose outlier channels per-tensor INT8 cannot hold: on the pretrained MiniLM, PTQ with
LayerNorm inputs quantized keeps an embedding fidelity of 0.72 (max calibration); without, 0.98."""


def _float_norms(config: dict) -> dict:
    """``config`` with the :data:`FLOAT_NORMS` layers' quantizers disabled (ModelOpt 0.47 list form)."""
    import copy

    cfg = copy.deepcopy(config)
    cfg["quant_cfg"] = list(cfg["quant_cfg"]) + [{"quantizer_name": "*", "parent_class": name, "enable": False} for name in FLOAT_NORMS]
    return cfg


_TOWER_RULES = ("*embed_vision*", "*vision_tower*", "*visual*", "*vision_model*", "*multi_modal_projector*")
"""ModelOpt's INT8/FP8 defaults keep a vision-language model's vision tower in float."""


def _tower_rules_dropped(config: dict, model: nn.Module) -> dict:
    """``config`` without :data:`_TOWER_RULES` when every Linear/Conv layer of ``model`` falls under
    them: the model is a vision tower itself (CLIP's vision model), not a language model beside
    one, and with the rules nothing would be quantized (ModelOpt then refuses the config)."""
    import copy
    from fnmatch import fnmatch

    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if not layers or not all(any(fnmatch(n, rule) for rule in _TOWER_RULES) for n in layers):
        return config
    cfg = copy.deepcopy(config)
    cfg["quant_cfg"] = [e for e in cfg["quant_cfg"] if not (e.get("quantizer_name") in _TOWER_RULES and e.get("enable") is False)]
    log.info("quantizing the vision tower: it is the whole model (ModelOpt's defaults keep a VLM's tower in float)")
    return cfg


def _disabled(config: dict, patterns: Sequence[str]) -> dict:
    """``config`` with every quantizer of the modules matching ``patterns`` off from the start (so
    ModelOpt never calibrates them, ModelOpt 0.47 list form)."""
    import copy

    cfg = copy.deepcopy(config)
    cfg["quant_cfg"] = list(cfg["quant_cfg"]) + [{"quantizer_name": f"*{p}*", "enable": False} for p in patterns]
    return cfg


def fold_parametrizations_(model: nn.Module) -> list[str]:
    """Replace every module with a parametrized weight (``torch.nn.utils.parametrizations.weight_norm``
    and friends, or the old ``weight_norm`` hook) by a plain module of its base class holding the
    tensors it computes, in place; returns the modules replaced.

    The model computes the same function; ModelOpt's quantizers cannot wrap a parametrized weight
    (Wav2Vec2's positional conv). The parametrized module itself is left as it was (PyTorch's
    ``remove_parametrizations`` edits the class shared by every copy of the module), so a copy of a
    model can be folded without touching the original.
    """
    from torch.nn.utils import parametrize

    folded = []
    for name, module in list(model.named_modules()):
        if not name:
            continue
        if parametrize.is_parametrized(module):
            plain = _plain_copy(module, module.__class__.__bases__[0], {t: getattr(module, t) for t in module.parametrizations.keys()}, drop_modules=("parametrizations",))
        elif hasattr(module, "weight_g") and hasattr(module, "weight_v") and any(type(h).__name__ == "WeightNorm" for h in module._forward_pre_hooks.values()):
            plain = _plain_copy(module, type(module), {"weight": module.weight}, drop_params=("weight_g", "weight_v"), drop_hooks=True)
        else:
            continue
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, plain)
        folded.append(name)
    return folded


def _plain_copy(module: nn.Module, cls: type, tensors: dict, drop_modules: Sequence[str] = (), drop_params: Sequence[str] = (), drop_hooks: bool = False) -> nn.Module:
    """A ``cls`` module sharing ``module``'s state, with ``tensors`` as plain parameters."""
    plain = cls.__new__(cls)
    plain.__dict__.update(module.__dict__)
    plain._parameters = {k: v for k, v in module._parameters.items() if k not in drop_params}
    plain._modules = {k: v for k, v in module._modules.items() if k not in drop_modules}
    plain._buffers = dict(module._buffers)
    if drop_hooks:
        plain._forward_pre_hooks = type(module._forward_pre_hooks)()
    for tensor, value in tensors.items():
        plain._parameters[tensor] = nn.Parameter(value.detach().clone(), requires_grad=True)
    return plain


def _per_tensor_weights(config: dict) -> dict:
    """``config`` with one scale per weight tensor instead of one per output channel."""
    import copy

    cfg = copy.deepcopy(config)
    for entry in cfg["quant_cfg"]:
        if entry.get("quantizer_name", "").endswith("weight_quantizer") and isinstance(entry.get("cfg"), dict):
            entry["cfg"]["axis"] = None
    return cfg


def _histogram_config(config: dict) -> dict:
    """``config`` with activation (input) quantizers on the histogram calibrator and no algorithm."""
    import copy

    cfg = copy.deepcopy(config)
    for entry in cfg["quant_cfg"]:  # ModelOpt 0.47: a list of {"quantizer_name", "cfg"} entries
        if "input_quantizer" in entry.get("quantizer_name", "") and isinstance(entry.get("cfg"), dict):
            entry["cfg"]["calibrator"] = "histogram"
    cfg["algorithm"] = None
    return cfg


def _calibrate_histograms(model: nn.Module, loop, method: str, percentile: float) -> None:
    """Collect activation histograms / weight maxima over ``loop`` and load amax by ``method``."""
    mtq_model_calib.enable_stats_collection(model)
    loop(model)
    for _, q in model.named_modules():
        if not isinstance(q, mtq_nn.TensorQuantizer) or q._disabled or getattr(q, "_calibrator", None) is None:
            continue
        if isinstance(q._calibrator, mtq_calib.HistogramCalibrator):
            q.load_calib_amax(method, **({"percentile": percentile} if method == "percentile" else {}))
        else:
            q.load_calib_amax()
        q.enable_quant()
        q.disable_calib()


def quantize_(
    model: nn.Module,
    calib: Sequence[tuple],
    precision: str = "int8",
    disable: Sequence[str] = (),
    method: str = "max",
    percentile: float = 99.99,
    quantize_norms: bool = False,
    per_channel_weights: bool = True,
) -> nn.Module:
    """Insert ModelOpt fake-quantizers into ``model`` (in place) and calibrate them.

    Args:
        model: a dense or ModelOpt-sparsified model (do NOT call ``mts.export`` on it first).
        calib: calibration batches (tuples of input tensors); 128-512 samples is typical.
        precision: ``int8`` (per-channel weights, per-tensor activations) or ``fp8``.
        disable: fnmatch patterns of module names whose quantizers stay off (kept in float).
        method: activation calibration, one of :data:`CALIB_METHODS`.
        percentile: the percentile of the ``percentile`` method (0..100).
        quantize_norms: also quantize the inputs of normalisation layers, as ModelOpt's default
            does (off: see :data:`FLOAT_NORMS`).
        per_channel_weights: one weight scale per output channel (ModelOpt's INT8 default); False:
            one per tensor (int8 only; to compare).

    Returns:
        The quantized model (ModelOpt may return a new object).

    Raises:
        CalibrationDataError: no calibration data.
        SparsekitError: an unknown precision or method, or ``entropy`` / ``mse`` with ``fp8``.
    """
    if precision not in QUANT_CONFIGS:
        raise SparsekitError(f"unknown quantization precision '{precision}'", f"use one of: {', '.join(QUANT_CONFIGS)}")
    if not calib:
        raise CalibrationDataError("quantization needs calibration data and none was given", "pass --calib, or let the kit use the model's random inputs")
    if method not in CALIB_METHODS:
        raise SparsekitError(f"unknown calibration method '{method}'", f"use one of: {', '.join(CALIB_METHODS)}")
    if precision == "fp8" and method in ("entropy", "mse"):  # ModelOpt 0.47's searches assume integer levels (TypeError on e4m3)
        raise SparsekitError(f"{method} calibration searches integer quantization grids, not fp8 (e4m3)", "use --calib-method max or percentile with --quantize fp8")
    config = getattr(mtq, QUANT_CONFIGS[precision])
    config = _tower_rules_dropped(config, model)
    if not quantize_norms:
        config = _float_norms(config)
    if not per_channel_weights:
        config = _per_tensor_weights(config)
    if disable:
        config = _disabled(config, disable)
    folded = fold_parametrizations_(model)
    if folded:
        log.info("folded the parametrized weights of %d module(s) before quantizing (%s)", len(folded), ", ".join(folded[:3]))
    with quiet_modelopt():
        try:
            if method == "max":
                model = mtq.quantize(model, config, forward_loop(calib))
            else:
                model = mtq.quantize(model, _histogram_config(config), None)
                _calibrate_histograms(model, forward_loop(calib), method, percentile)
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise SparsekitError(f"ModelOpt could not quantize this model to {precision} ({type(exc).__name__}: {first})", "keep the layer it names (or the layers it could be) unquantized with --no-quant PATTERN (recipes: no_quant)") from exc
        for pattern in disable:
            mtq.disable_quantizer(model, f"*{pattern}*")
    return model
