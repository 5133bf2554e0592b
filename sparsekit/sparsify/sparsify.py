"""2:4-sparsify a PyTorch model in place through ModelOpt, with every mask in TensorRT's layout."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from sparsekit._quiet import quiet_modelopt
from sparsekit.errors import CalibrationDataError, NoEligibleLayersError, SparsekitError
from sparsekit.sparsify.check import CheckReport, check_model
from sparsekit.sparsify.config import SparsifyConfig
from sparsekit.sparsify.methods import get_method
from sparsekit.sparsify.pattern import magnitude_mask, retained_magnitude
from sparsekit.sparsify.permute import PermutationReport, permute_channels_
from sparsekit.sparsify.select import select_layers
from sparsekit.analyze.layer_kinds import known_layers
from sparsekit.analyze.ties import TiedWeight, tied_weights
from sparsekit.models.ties import untie_
from sparsekit._memory import import_cleanly
from sparsekit.models.calib import forward_loop
from sparsekit.sparsify.layer_lists import resolve_layer_patterns
from sparsekit.sparsify.sparsegpt_conv import ConvHessians, sparsegpt_conv_mask, supports
from sparsekit._lazy import lazy_import

mts = lazy_import("modelopt.torch.sparsity")
sparsegpt = lazy_import("modelopt.torch.sparsity.weight_sparsity.sparsegpt")

log = logging.getLogger(__name__)


@dataclass
class LayerDecision:
    """What happened to one Linear/Conv2d layer.

    Attributes:
        name: module path.
        kind: ``Linear`` or ``Conv2d``.
        shape: weight shape.
        status: ``sparsified``, ``fallback`` (TensorRT-layout magnitude mask instead of the
            method's own), ``skipped`` (ModelOpt's shape rules refuse it) or ``excluded`` (by pattern).
        reason: why.
        retained: share of the weight's L1 magnitude the mask keeps (0..1), for sparsified layers.
        tied_to: the parameter this layer's weight is shared with (e.g. a token embedding), if any.
    """

    name: str
    kind: str
    shape: list[int]
    status: str
    reason: str
    retained: float | None = None
    tied_to: str | None = None


@dataclass
class SparsifyReport:
    """Result of :func:`sparsify_`."""

    method: str
    seconds: float
    layers: list[LayerDecision] = field(default_factory=list)
    unmatched_patterns: list[str] = field(default_factory=list)
    check: CheckReport | None = None
    permutation: PermutationReport | None = None
    tied: list[TiedWeight] = field(default_factory=list)

    @property
    def sparsified(self) -> list[str]:
        return [d.name for d in self.layers if d.status in ("sparsified", "fallback")]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "seconds": round(self.seconds, 3),
            "sparsified": self.sparsified,
            "unmatched_patterns": self.unmatched_patterns,
            "layers": [asdict(d) for d in self.layers],
            "check": self.check.to_dict() if self.check else None,
            "permutation": self.permutation.to_dict() if self.permutation else None,
            "tied": [t.to_dict() for t in self.tied],
        }


def _modelopt_config(selected: Sequence[str]) -> dict:
    rules = {"*": None, **{name: {} for name in selected}}
    return {"nn.Linear": rules, "nn.Conv2d": rules}


def _with_kit_hessians(loop, layers: dict[str, nn.Module], hessians):
    """``loop`` run with SparseGPT's own Hessian hooks removed from the k x k convs in ``layers`` and
    the kit's (:class:`~sparsekit.sparsify.sparsegpt_conv.ConvHessians`, with the conv's padding)
    collecting their statistics instead.

    ModelOpt 0.47 unfolds a conv's inputs without its padding, which skews the statistics at the
    borders and fails outright on feature maps smaller than the kernel (the digits CNN's 2x2 maps);
    its mask for these layers is replaced by the kit's anyway. A layer left without ModelOpt samples
    gets an all-zero mask from ModelOpt, which the kit then overwrites.
    """
    hessian_hook = sparsegpt.SparseGPTSearcher._hook_compute_hessian.__func__

    def run(model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name in layers:
            for key, hook in list(modules[name]._forward_hooks.items()):
                if getattr(hook, "__func__", None) is hessian_hook:
                    del modules[name]._forward_hooks[key]
        hessians.layers = {n: modules[n] for n in layers}  # ModelOpt may have converted the module objects
        with hessians:
            loop(model)

    return run


def _run_modelopt(model: nn.Module, mode: str, selected: Sequence[str], calib, replaced: Sequence[str] = (), hessians=None) -> nn.Module:
    """ModelOpt's ``mode`` on the ``selected`` layers (calibrated on ``calib`` where it needs data);
    layers in ``replaced`` get their masks from the kit afterwards, so ModelOpt collects no
    statistics for them; ``hessians`` (a :class:`~sparsekit.sparsify.sparsegpt_conv.ConvHessians`),
    when given, collects the kit's own for them in the same calibration pass."""
    import_cleanly("modelopt.torch")  # not on this stack: the import would keep sparsify_'s weight copies alive

    search = {}
    if calib is not None:
        loop = forward_loop(calib)
        if replaced and mode == "sparsegpt" and hessians is not None:
            loop = _with_kit_hessians(loop, dict.fromkeys(replaced), hessians)
        if mode == "sparsegpt":
            loop = _with_flat_linear_inputs(loop)
        search["forward_loop"] = loop
    with quiet_modelopt():
        return mts.sparsify(model, [(mode, _modelopt_config(selected))], config=search)


def _with_flat_linear_inputs(loop):
    """``loop`` with every Linear layer seeing its input as ``[B, rows, C]`` while it runs.

    ModelOpt's SparseGPT statistics hook flattens 2-D and 3-D Linear inputs only; a Linear applied
    to ``[B, H, W, C]`` (ConvNeXt's pointwise layers) or any other number of leading dims would end
    in ``t_() expects a tensor with <= 2 dimensions``. A pre-hook folds the leading dims into one
    (the Linear computes the same rows) and a hook restores the output's shape, so the statistics
    are collected on the model as it is.
    """
    import torch

    def run(model):
        leading: dict[int, torch.Size] = {}

        def flatten(module, args):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.dim() > 3:
                leading[id(module)] = x.shape[:-1]
                return (x.reshape(x.shape[0], -1, x.shape[-1]), *args[1:])
            return None

        def restore(module, args, out):
            shape = leading.pop(id(module), None)
            return out.reshape(*shape, out.shape[-1]) if shape is not None else None

        handles = []
        for module in model.modules():
            if "Linear" in type(module).__name__:  # ModelOpt's own test (nn.Linear and its sparse subclass)
                handles += [module.register_forward_pre_hook(flatten), module.register_forward_hook(restore)]
        try:
            loop(model)
        finally:
            for handle in handles:
                handle.remove()

    return run


def _apply_trt_layout_mask(module: nn.Module, original: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Replace a module's ModelOpt mask by ``mask`` (default: a magnitude 2:4 mask) in TensorRT layout (axis 1)."""
    import torch

    mask = magnitude_mask(original, axis=1) if mask is None else mask
    with torch.no_grad():
        module._weight_mask.copy_(torch.from_numpy(mask).to(module._weight_mask.dtype))
        module.weight.data.copy_(torch.from_numpy(original * mask).to(module.weight.dtype))  # noqa: not masked-view
    return retained_magnitude(original, mask)


def sparsify_(
    model: nn.Module,
    method: str = "magnitude",
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    calib: list[tuple] | None = None,
    permute: bool = False,
    permute_sweeps: int = 100,
    untie_tied: bool = False,
    conv_masks: str = "sparsegpt",
) -> tuple[nn.Module, SparsifyReport]:
    """2:4-sparsify ``model`` in place through ModelOpt.

    Layers are Linear/Conv2d matching ``include`` and no ``exclude`` pattern (fnmatch on module
    paths) that ModelOpt's shape rules accept. For ``sparsegpt`` on k x k convs, whose ModelOpt mask
    is grouped along the flattened (C x R x S) axis instead of TensorRT's C axis, the kit runs
    SparseGPT itself with the columns ordered (r, s, c), so that its groups of 4 fall on input
    channels (:mod:`~sparsekit.sparsify.sparsegpt_conv`); where that cannot apply (grouped convs,
    no calibration sample) it falls back to a magnitude mask in TensorRT's layout and records
    ``fallback`` for the layer with the reason.

    Args:
        model: the dense model (modified and returned: ModelOpt may replace the module object).
        method: ``magnitude`` or ``sparsegpt``.
        include: fnmatch patterns of layers to consider.
        exclude: fnmatch patterns of layers to keep dense.
        calib: calibration batches (tuples of input tensors); required by ``sparsegpt``.
        permute: first reorder the input channels of selected layers (with their producers'
            outputs; the dense function is unchanged) to raise the magnitude 2:4 keeps.
        permute_sweeps: permutation search sweeps per layer (deterministic; see :func:`permute_channels_`).
        untie_tied: sparsify layers whose weight is tied to another parameter (a language model's
            head and its token embedding) by giving them their own copy first; the report states the
            size cost. By default they are kept dense.
        conv_masks: for ``sparsegpt`` on k x k convs: ``sparsegpt`` (TensorRT-layout SparseGPT) or
            ``magnitude`` (the TensorRT-layout magnitude mask, for comparison).

    Returns:
        ``(model, report)``; the report includes a 2:4 check of every sparsified layer.

    Raises:
        NoEligibleLayersError: no selected layer can be sparsified.
        CalibrationDataError: the method needs calibration data and none was given.
    """
    start = time.perf_counter()
    spec = get_method(method)
    if spec.needs_calibration and not calib:
        raise CalibrationDataError(f"method '{method}' needs calibration data", "pass --calib FILE, or use the model's own random inputs")
    layers = known_layers(model)  # every layer gets a decision; the method's rule says which it can take
    selected, unmatched = select_layers(list(layers), include, exclude)
    ties = tied_weights(model, layers)
    decisions: dict[str, LayerDecision] = {}
    accepted = []
    for name, module in layers.items():
        kind, shape = type(module).__name__, list(module.weight.shape)
        verdict = spec.will_sparsify(kind, tuple(shape), getattr(module, "groups", 1))
        tie = ties.get(name)
        if name not in selected:
            decisions[name] = LayerDecision(name, kind, shape, "excluded", "excluded by pattern")
        elif not verdict.ok:
            decisions[name] = LayerDecision(name, kind, shape, "skipped", verdict.reason)
        elif tie is not None and not untie_tied:
            reason = f"weight tied to '{tie.tied_to}': kept dense (a 2:4 copy would add {tie.extra_bytes / 1e6:.2f} MB in fp32); sparsify it with --untie-tied"
            decisions[name] = LayerDecision(name, kind, shape, "skipped", reason)
        else:
            accepted.append(name)
            decisions[name] = LayerDecision(name, kind, shape, "sparsified", verdict.reason)
        if tie is not None:
            decisions[name].tied_to = tie.tied_to
    for name in accepted:
        if name in ties:
            untie_(layers[name])
            ties[name].action = "untied"
            log.warning("untied %s from %s to sparsify it: +%.2f MB (fp32) in the checkpoint and the ONNX", name, ties[name].tied_to, ties[name].extra_bytes / 1e6)
    if not accepted:
        raise NoEligibleLayersError(f"no layer of this model can be 2:4-sparsified by '{method}' ({len(layers)} Linear/Conv2d layers, {len(selected)} selected)", "check --include/--exclude, or see 'sparsekit analyze' for the shape rules")
    permutation = permute_channels_(model, accepted, sweeps=permute_sweeps) if permute else None
    kxk = {n: layers[n].weight.detach().float().cpu().numpy().copy() for n in accepted if not spec.trt_layout_convs and decisions[n].kind == "Conv2d" and tuple(decisions[n].shape[2:]) != (1, 1)}
    if conv_masks not in ("sparsegpt", "magnitude"):
        raise SparsekitError(f"conv_masks must be 'sparsegpt' or 'magnitude', not '{conv_masks}'", "use sparsegpt (default) or magnitude")

    why_not = {n: ("magnitude masks asked for k x k convs" if conv_masks == "magnitude" else supports(layers[n])[1]) for n in kxk}
    hessians = ConvHessians({})
    originals = {n: layers[n].weight.detach().float().cpu().numpy().copy() for n in accepted}
    model = _run_modelopt(model, spec.modelopt_mode, accepted, calib, replaced=list(kxk), hessians=hessians)
    modules = dict(model.named_modules())
    for name in accepted:
        module = modules[name]
        if name in kxk:
            mask = None
            if not why_not[name] and hessians.samples.get(name, 0) == 0:
                why_not[name] = "no calibration sample reached it"
            if not why_not[name]:
                mask = sparsegpt_conv_mask(torch.from_numpy(kxk[name]), hessians.hessian[name])
                decisions[name].reason = "k x k conv: SparseGPT with columns ordered (r, s, c), groups of 4 on input channels (TensorRT's layout)"
            else:
                decisions[name].status = "fallback"
                decisions[name].reason = f"k x k conv: TensorRT-layout magnitude mask ({why_not[name]})"
            decisions[name].retained = round(_apply_trt_layout_mask(module, kxk[name], mask), 4)
        else:
            mask = module._weight_mask.detach().cpu().numpy().astype(bool)
            decisions[name].retained = round(retained_magnitude(originals[name], mask), 4)
    report = SparsifyReport(method, time.perf_counter() - start, list(decisions.values()), unmatched, permutation=permutation, tied=list(ties.values()))
    report.check = check_model(model, source="sparsified model")
    log.info("sparsified %d of %d layers with %s", len(report.sparsified), len(layers), method)
    return model, report


def sparsify_loaded_(loaded, config: SparsifyConfig) -> SparsifyReport:
    """The sparsify stage: ``loaded`` (a :class:`~sparsekit.models.loaded.LoadedModel`) made 2:4 as
    ``config`` says, in place (``loaded.model`` may be replaced by ModelOpt's converted module).

    Layer lists are read (:func:`~sparsekit.sparsify.layer_lists.resolve_layer_patterns`) and
    calibration batches made (for ``sparsegpt``, or when data is given) before :func:`sparsify_`.

    Raises:
        SparsekitError: bad lists or calibration data, or no layer to sparsify.
    """
    include, exclude = resolve_layer_patterns(config.include, config.exclude, config.include_from, config.exclude_from)
    calib = config.batches_for(loaded) if config.needs_calibration else None
    loaded.model, report = sparsify_(loaded.model, config.method, include, exclude, calib, permute=config.permute, permute_sweeps=config.permute_sweeps, untie_tied=config.untie_tied, conv_masks=config.conv_masks)
    return report
