"""2:4-sparsify a PyTorch model in place through ModelOpt, with every mask in TensorRT's layout."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from torch import nn

from sparsekit._quiet import quiet_modelopt
from sparsekit.errors import CalibrationDataError, NoEligibleLayersError
from sparsekit.sparsify.check import CheckReport, check_model
from sparsekit.sparsify.methods import get_method
from sparsekit.sparsify.pattern import magnitude_mask, retained_magnitude
from sparsekit.sparsify.permute import PermutationReport, permute_channels_
from sparsekit.sparsify.select import candidate_layers, select_layers

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
    """

    name: str
    kind: str
    shape: list[int]
    status: str
    reason: str
    retained: float | None = None


@dataclass
class SparsifyReport:
    """Result of :func:`sparsify_`."""

    method: str
    seconds: float
    layers: list[LayerDecision] = field(default_factory=list)
    unmatched_patterns: list[str] = field(default_factory=list)
    check: CheckReport | None = None
    permutation: PermutationReport | None = None

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
        }


def _modelopt_config(selected: Sequence[str]) -> dict:
    rules = {"*": None, **{name: {} for name in selected}}
    return {"nn.Linear": rules, "nn.Conv2d": rules}


def _run_modelopt(model: nn.Module, mode: str, selected: Sequence[str], calib) -> nn.Module:
    import modelopt.torch.sparsity as mts

    from sparsekit.models.calib import forward_loop

    search = {"forward_loop": forward_loop(calib)} if calib is not None else {}
    with quiet_modelopt():
        return mts.sparsify(model, [(mode, _modelopt_config(selected))], config=search)


def _apply_trt_layout_mask(module: nn.Module, original: np.ndarray) -> float:
    """Replace a module's ModelOpt mask by a magnitude 2:4 mask in TensorRT layout (axis 1)."""
    import torch

    mask = magnitude_mask(original, axis=1)
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
) -> tuple[nn.Module, SparsifyReport]:
    """2:4-sparsify ``model`` in place through ModelOpt.

    Layers are Linear/Conv2d matching ``include`` and no ``exclude`` pattern (fnmatch on module
    paths) that ModelOpt's shape rules accept. For ``sparsegpt`` on k x k convs, whose ModelOpt mask
    is grouped along the flattened (C x R x S) axis instead of TensorRT's C axis, the kit falls back
    to a magnitude mask in TensorRT's layout and records ``fallback`` for the layer.

    Args:
        model: the dense model (modified and returned: ModelOpt may replace the module object).
        method: ``magnitude`` or ``sparsegpt``.
        include: fnmatch patterns of layers to consider.
        exclude: fnmatch patterns of layers to keep dense.
        calib: calibration batches (tuples of input tensors); required by ``sparsegpt``.
        permute: first reorder the input channels of selected layers (with their producers'
            outputs; the dense function is unchanged) to raise the magnitude 2:4 keeps.
        permute_sweeps: permutation search sweeps per layer (deterministic; see :func:`permute_channels_`).

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
    layers = candidate_layers(model)
    selected, unmatched = select_layers(list(layers), include, exclude)
    decisions: dict[str, LayerDecision] = {}
    accepted = []
    for name, module in layers.items():
        kind, shape = type(module).__name__, list(module.weight.shape)
        verdict = spec.will_sparsify(kind, tuple(shape))
        if name not in selected:
            decisions[name] = LayerDecision(name, kind, shape, "excluded", "excluded by pattern")
        elif not verdict.ok:
            decisions[name] = LayerDecision(name, kind, shape, "skipped", verdict.reason)
        else:
            accepted.append(name)
            decisions[name] = LayerDecision(name, kind, shape, "sparsified", verdict.reason)
    if not accepted:
        raise NoEligibleLayersError(f"no layer of this model can be 2:4-sparsified by '{method}' ({len(layers)} Linear/Conv2d layers, {len(selected)} selected)", "check --include/--exclude, or see 'sparsekit analyze' for the shape rules")
    permutation = permute_channels_(model, accepted, sweeps=permute_sweeps) if permute else None
    fallbacks = {n: layers[n].weight.detach().float().cpu().numpy().copy() for n in accepted if not spec.trt_layout_convs and decisions[n].kind == "Conv2d" and tuple(decisions[n].shape[2:]) != (1, 1)}
    originals = {n: layers[n].weight.detach().float().cpu().numpy().copy() for n in accepted}
    model = _run_modelopt(model, spec.modelopt_mode, accepted, calib)
    modules = dict(model.named_modules())
    for name in accepted:
        module = modules[name]
        if name in fallbacks:
            decisions[name].status = "fallback"
            decisions[name].reason = "k x k conv: SparseGPT groups along C*R*S, not TensorRT's C axis; used a TensorRT-layout magnitude mask"
            decisions[name].retained = round(_apply_trt_layout_mask(module, fallbacks[name]), 4)
        else:
            mask = module._weight_mask.detach().cpu().numpy().astype(bool)
            decisions[name].retained = round(retained_magnitude(originals[name], mask), 4)
    report = SparsifyReport(method, time.perf_counter() - start, list(decisions.values()), unmatched, permutation=permutation)
    report.check = check_model(model, source="sparsified model")
    log.info("sparsified %d of %d layers with %s", len(report.sparsified), len(layers), method)
    return model, report
