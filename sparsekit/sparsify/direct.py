"""2:4 magnitude masks written straight into a model's weights, without ModelOpt.

The result is numerically what ModelOpt's ``sparse_magnitude`` mode gives (same layer rules, same
TensorRT-layout groups, same kept values; ``tests/sparsify/test_direct.py`` checks it element for
element), but the masks are baked into plain ``nn.Linear`` / ``nn.Conv2d`` weights, on whatever
device the model lives. This is the benchmark path on machines where ModelOpt is not installed
(a GPU host for ``benchmarks/gpu_suite.py``) and where a model is too large to mask on the CPU.
It keeps no masks for training: use :func:`sparsekit.sparsify.sparsify.sparsify_` to fine-tune.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from torch import nn

from sparsekit.errors import NoEligibleLayersError
from sparsekit.sparsify.methods import get_method
from sparsekit.sparsify.pattern import magnitude_mask
from sparsekit.sparsify.select import candidate_layers, select_layers


@dataclass
class DirectMaskReport:
    """What :func:`mask_weights_2to4_` did.

    Attributes:
        source: where the masks came from (always the kit's own TensorRT-layout magnitude rule).
        masked: layers whose weight now holds 2:4 along axis 1.
        skipped: layer -> reason (shape rule, or excluded by pattern).
        retained: layer -> share of the weight's L1 magnitude kept (0..1).
    """

    source: str = "sparsekit magnitude mask (TensorRT layout, ModelOpt sparse_magnitude rules)"
    masked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    retained: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def mask_weights_2to4_(model: nn.Module, include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> DirectMaskReport:
    """Zero 2 of every 4 input-channel weights (the smaller magnitudes) of the selected layers, in place.

    Layers: ``nn.Linear`` / ``nn.Conv2d`` matching ``include`` and no ``exclude`` pattern that
    ModelOpt's magnitude rule accepts (out % 8 == 0, in % 16 == 0). Works on any device and dtype.

    Raises:
        NoEligibleLayersError: no selected layer can hold 2:4.
    """
    import torch

    rule = get_method("magnitude")
    layers = candidate_layers(model)
    selected, _ = select_layers(list(layers), include, exclude)
    report = DirectMaskReport()
    with torch.no_grad():
        for name, module in layers.items():
            verdict = rule.will_sparsify(type(module).__name__, tuple(module.weight.shape), getattr(module, "groups", 1))
            if name not in selected:
                report.skipped[name] = "excluded by pattern"
            elif not verdict.ok:
                report.skipped[name] = verdict.reason
            else:
                w = module.weight
                mask = magnitude_mask(w, axis=1)
                total = w.float().abs().sum().item()
                w.mul_(mask.to(w.dtype))
                report.retained[name] = round(w.float().abs().sum().item() / total, 4) if total else 1.0
                report.masked.append(name)
    if not report.masked:
        raise NoEligibleLayersError(f"no layer of this model can hold 2:4 ({len(layers)} Linear/Conv2d layers, {len(selected)} selected)", "check the include/exclude patterns, or see 'sparsekit analyze' for the shape rules")
    return report
