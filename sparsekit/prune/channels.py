"""Channel pruning: remove whole filters, attention heads and FFN neurons (a smaller dense model).

Dependencies (residual adds, concatenations, depthwise/grouped convs, BatchNorm, Q/K/V heads) come
from Torch-Pruning's ``DependencyGraph``: it traces the model once and prunes every coupled layer
of a group together, which hand-written graph surgery gets wrong on the first residual block.
ModelOpt's pruning (``fastnas``, ``mcore_minitron``) searches widths under a FLOPs budget with a
training loop, or targets Megatron models; an explicit ratio with a named importance score on any
``nn.Module`` is what Torch-Pruning offers, and what this module wraps. No Torch-Pruning object
leaves this module.

Importance scores: ``l1`` / ``l2`` filter norms (no data), ``bn`` the BatchNorm scale |gamma|
(network slimming; train with ``bn_l1`` first), ``taylor`` first-order Taylor |w * dL/dw| (needs a
task with labels). Widths are rounded to multiples of ``round_to``: 16 by default, because
ModelOpt 2:4-sparsifies a layer only when its input channels are a multiple of 16 and INT8 Tensor
Core GEMMs want 16 (8 suffices for fp16 alone). The model's output width never changes.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.prune.attention import attention_blocks, transformer_fixed_layers
from sparsekit.models.structure import record_edit, refuse_converted, resize_edit, snapshot_sizes
from sparsekit.analyze.flops import layer_flops
from sparsekit.analyze.ties import tied_weights

log = logging.getLogger(__name__)

IMPORTANCE = ("l1", "l2", "bn", "taylor")
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class ChannelPruneReport:
    """What :func:`prune_channels_` removed.

    Attributes:
        importance: the score that ranked channels.
        ratio: share of channels asked to go (per layer, or globally with ``global_ranking``).
        round_to: widths kept at multiples of this.
        layers: ``{layer: [width before, width after]}`` of every Linear/Conv whose output width changed.
        heads: ``{attention block: [heads before, heads after]}``.
        fixed: ``{layer: why}`` of layers whose output width had to stay.
        params: ``[before, after]`` parameter counts.
        flops: ``[before, after]`` FLOPs of one forward pass of one sample.
        seconds: wall time.
    """

    importance: str
    ratio: float
    round_to: int
    layers: dict[str, list[int]] = field(default_factory=dict)
    heads: dict[str, list[int]] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    params: list[int] = field(default_factory=list)
    flops: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 2)}


def _importance(name: str, model: nn.Module):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bn":
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise SparsekitError("importance 'bn' ranks channels by BatchNorm scale, and this model has no BatchNorm layer", "use --importance l1, l2 or taylor")
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.TaylorImportance()
    raise SparsekitError(f"unknown channel importance '{name}'", f"use one of: {', '.join(IMPORTANCE)}")


def _output_layers(model: nn.Module, inputs: tuple) -> dict[str, str]:
    """``{layer: why}`` of Linear/Conv layers whose output is one of the model's outputs."""
    produced: dict[int, str] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, name=name: produced.__setitem__(id(out), name)) for name, m in model.named_modules() if isinstance(m, _PRUNABLE)]
    try:
        with torch.no_grad():
            outputs = model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return {produced[id(o)]: "its output is a model output" for o in outputs if id(o) in produced}


def _output_shapes(model: nn.Module, inputs: tuple) -> list[tuple]:
    with torch.no_grad():
        out = model(*inputs)
    return [tuple(t.shape) for t in (out if isinstance(out, (tuple, list)) else (out,))]


def _scalar_sum(out) -> torch.Tensor:
    items = out if isinstance(out, (tuple, list)) else (out,)
    return sum(t.float().sum() for t in items if torch.is_tensor(t) and t.is_floating_point())


def _widths(model: nn.Module) -> dict[str, int]:
    return {n: (m.out_features if isinstance(m, nn.Linear) else m.out_channels) for n, m in model.named_modules() if isinstance(m, _PRUNABLE)}


def prune_channels_(
    loaded,
    ratio: float = 0.25,
    importance: str = "l1",
    round_to: int = 16,
    layer_ratios: Mapping[str, float] | None = None,
    exclude: Sequence[str] = (),
    global_ranking: bool = False,
    head_ratio: float | None = None,
    gradients: Callable[[nn.Module], None] | None = None,
) -> ChannelPruneReport:
    """Remove the least important output channels (and heads, FFN neurons) of ``loaded.model`` in place.

    Args:
        loaded: a :class:`~sparsekit.models.loaded.LoadedModel` (dense; prune before 2:4 and
            quantization). The pruned sizes are recorded in ``loaded.source["edits"]`` so a
            checkpoint of it rebuilds the smaller model.
        ratio: share of each layer's output channels to remove, 0 <= ratio < 1.
        importance: ``l1``, ``l2``, ``bn`` or ``taylor``.
        round_to: keep widths at multiples of this (1: no rounding).
        layer_ratios: ``{fnmatch pattern: ratio}`` overriding ``ratio`` for matching layers.
        exclude: fnmatch patterns of layers whose output width must stay.
        global_ranking: rank channels across layers (widths then differ per layer) instead of
            removing ``ratio`` of each layer.
        head_ratio: share of attention heads to remove in each recognised attention block
            (default: ``ratio``); FFN neurons follow ``ratio``.
        gradients: for ``taylor``: runs forward + backward passes on labelled data so that every
            weight has a ``.grad``.

    Returns:
        A :class:`ChannelPruneReport`.

    Raises:
        SparsekitError: a ratio outside [0, 1), a bad importance, ``taylor`` without gradients, or
            a pruned model whose output shapes changed.
        NoEligibleLayersError: nothing can be pruned (every layer fixed or excluded).
    """
    import torch_pruning as tp

    start = time.perf_counter()
    ratios = {"ratio": ratio, **{f"layer ratio '{k}'": v for k, v in (layer_ratios or {}).items()}, **({"head ratio": head_ratio} if head_ratio is not None else {})}
    for what, value in ratios.items():
        if not 0.0 <= float(value) < 1.0:
            raise SparsekitError(f"{what} must be in [0, 1), got {value}", "give the share of channels to remove, e.g. 0.25")
    if round_to < 1:
        raise SparsekitError(f"round_to must be at least 1, got {round_to}", "use 16 (2:4 and INT8 friendly), 8 (fp16) or 1 for no rounding")
    model = loaded.model.eval()
    refuse_converted(model, "channel pruning")
    inputs = loaded.inputs.random(batch=2)  # batch 2: BatchNorm and batch-1 squeezes trace like real batches
    one = loaded.inputs.random(batch=1)
    imp = _importance(importance, model)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, _PRUNABLE)}
    blocks = attention_blocks(model)
    fixed = {**_output_layers(model, inputs), **transformer_fixed_layers(model, blocks)}
    fixed.update({n: "its weight is tied to another parameter" for n in tied_weights(model, layers)})
    fixed.update({n: "excluded" for n in layers if any(fnmatch.fnmatchcase(n, p) for p in exclude)})
    if all(n in fixed for n in layers):
        raise NoEligibleLayersError(f"no layer of {loaded.name} can lose channels (all {len(layers)} keep their width: outputs, residual stream, ties or excluded)", "check --exclude; a model whose every layer feeds an output cannot be channel-pruned")
    if importance == "taylor":
        if gradients is None:
            raise SparsekitError("importance 'taylor' needs gradients from labelled data", "give a task with labels (--task digits), or use --importance l1")
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            gradients(model)
    shapes_before = _output_shapes(model, inputs)
    sizes_before = snapshot_sizes(model)
    widths_before = _widths(model)
    heads_before = {b.name: b.heads for b in blocks}
    params_before = sum(p.numel() for p in model.parameters())
    flops_before = layer_flops(model, one)[2]
    layer_ratio = {layers[n]: float(r) for pattern, r in (layer_ratios or {}).items() for n in layers if fnmatch.fnmatchcase(n, pattern) and n not in fixed}
    pruner = tp.pruner.MetaPruner(
        model, inputs, importance=imp, pruning_ratio=ratio, pruning_ratio_dict=layer_ratio or None,
        global_pruning=global_ranking, round_to=round_to if round_to > 1 else None,
        ignored_layers=[layers[n] for n in fixed],
        num_heads={p: b.heads for b in blocks for p in b.projections},
        prune_num_heads=bool(blocks), prune_head_dims=False,
        head_pruning_ratio=ratio if head_ratio is None else head_ratio,
        output_transform=_scalar_sum,
    )
    pruner.step()
    for b in blocks:
        b.sync_heads_()
    model.zero_grad(set_to_none=True)
    shapes_after = _output_shapes(model, inputs)
    if shapes_after != shapes_before:
        raise SparsekitError(f"pruning changed {loaded.name}'s output shapes {shapes_before} -> {shapes_after}", "exclude the layer that produces the output (--exclude NAME)")
    record_edit(loaded, resize_edit(sizes_before, model))
    widths_after = _widths(model)
    report = ChannelPruneReport(
        importance, ratio, round_to,
        layers={n: [widths_before[n], w] for n, w in widths_after.items() if w != widths_before[n]},
        heads={b.name: [heads_before[b.name], b.heads] for b in blocks if b.heads != heads_before[b.name]},
        fixed=fixed,
        params=[params_before, sum(p.numel() for p in model.parameters())],
        flops=[flops_before, layer_flops(model, one)[2]],
    )
    report.seconds = time.perf_counter() - start
    log.info("pruned %d layers: %d -> %d parameters", len(report.layers), *report.params)
    return report


def taylor_gradients(task, batch_size: int, batches: int = 8):
    """``gradients(model)``: backward passes of the task loss on a few training batches."""

    def run(model):
        model.train()
        for batch in task.train_batches(batch_size)(0)[:batches]:
            loss = task.task_loss(model, batch)
            if loss is None:
                raise SparsekitError(f"importance 'taylor' needs labels, and task '{task.name}' has none", "use --importance l1")
            loss.backward()
        model.eval()

    return run
