"""Keep 2:4 masks in force while a model trains.

ModelOpt's sparse modules store the dense parameter and a ``_weight_mask`` buffer; their
``weight`` attribute returns ``parameter * mask``, so the gradient of a pruned weight is zero.
Optimizers still touch pruned entries through weight decay and state (momentum, Adam moments)
built up elsewhere; :class:`MaskGuard` zeroes pruned entries of the parameter and of every
optimizer state tensor of its shape after each step, so nothing pruned can come back and a
later ``mts.export`` or ``state_dict`` sees exact zeros.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from sparsekit.sparsify.pattern import magnitude_mask


def masked_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, torch.Tensor]]:
    """Yield ``(module name, dense weight parameter, bool keep-mask)`` for every 2:4-masked layer.

    Layers ModelOpt left dense (an all-ones mask) are not yielded.
    """
    for name, module in model.named_modules():
        mask = getattr(module, "_weight_mask", None)
        if mask is None or bool(mask.all()):
            continue
        param = module._parameters.get("weight")
        if param is not None:
            yield name, param, mask.bool()


def zero_masks(model: nn.Module) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    """``{module name: (weight, keep-mask)}`` of Linear/Conv weights with exact zeros and no 2:4 mask
    (unstructured pruning): the zeros as they are now, to be kept."""
    masked = {name for name, _, _ in masked_parameters(model)}
    out = {}
    for name, module in model.named_modules():
        param = module._parameters.get("weight") if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) else None
        if param is not None and name not in masked:
            keep = param.detach() != 0
            if not bool(keep.all()):
                out[name] = (param, keep)
    return out


@torch.no_grad()
def enforce_masks_(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, extra: dict[str, tuple[nn.Parameter, torch.Tensor]] | None = None) -> int:
    """Zero pruned entries of every masked weight (and of the optimizer's state for it), in place.

    Args:
        model: a model sparsified with :func:`sparsekit.sparsify.sparsify_` (or ModelOpt).
        optimizer: its optimizer; per-parameter state tensors shaped like the weight are masked too.
        extra: more ``{name: (weight, keep-mask)}`` to enforce (see :func:`zero_masks`).

    Returns:
        The number of masked layers.
    """
    count = 0
    for _, param, mask in [*masked_parameters(model), *((n, p, m) for n, (p, m) in (extra or {}).items())]:
        param.mul_(mask.to(param.dtype))
        if optimizer is not None:
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(mask.to(value.dtype))
        count += 1
    return count


class MaskGuard:
    """Re-apply 2:4 masks after every ``optimizer.step()`` of a user's own training loop.

    Example::

        model, _ = sparsify_(model, "sparsegpt", calib=batches)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        with MaskGuard(model, optimizer):
            for batch in loader:
                loss = loss_fn(model(batch.x), batch.y)
                loss.backward(); optimizer.step(); optimizer.zero_grad()

    Args:
        model: the sparsified model.
        optimizer: the optimizer training it.
        keep_zeros: also keep every Linear/Conv weight entry that is exactly zero on entry at zero
            (unstructured pruning).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, keep_zeros: bool = False) -> None:
        self.model = model
        self.optimizer = optimizer
        self.keep_zeros = keep_zeros
        self._handle = None

    def __enter__(self) -> "MaskGuard":
        extra = zero_masks(self.model) if self.keep_zeros else None
        enforce_masks_(self.model, self.optimizer, extra)
        self._handle = self.optimizer.register_step_post_hook(lambda opt, args, kwargs: enforce_masks_(self.model, opt, extra))
        return self

    def settle(self) -> None:
        """Nothing to put back: fixed masks keep the parameters masked (see :meth:`LearnedMasks.settle`)."""

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class LearnedMasks:
    """Learned 2:4 masks during training: SR-STE (Zhou et al., ICLR 2021), TensorRT layout throughout.

    Each 2:4 layer keeps its dense weight. Before the layer's first forward after an optimizer
    step, its mask is recomputed from the dense weight's magnitudes (2:4 on axis 1, TensorRT's
    groups) and the forward runs on the masked weight; the gradient reaches every dense entry
    (straight-through estimator), and the step adds ``decay * (1 - mask) * w`` to the gradient of
    the pruned entries (SR-STE's sparse-refined term), so weights move between the kept and the
    pruned sets, and pruned ones that do not earn their place shrink. At rest (between steps, and
    in saved training states) ModelOpt's ``_weight_mask`` holds the current mask and the parameter
    the dense weight. On exit the masks are frozen: the pruned entries (and their optimizer
    state) become exact zeros, so the model is an ordinary fixed-mask 2:4 model for export.

    With ``freeze_at`` the masks stop moving after that many optimizer steps: they are frozen
    then (as on exit) and the rest of the run trains with fixed masks (:class:`MaskGuard`), so a
    schedule can let masks settle instead of flipping until the last step.

    Args:
        model: a model with ModelOpt 2:4 masks (:func:`sparsekit.sparsify.sparsify_`).
        optimizer: its optimizer.
        decay: SR-STE's lambda_w (2e-4 in the paper).
        freeze_at: optimizer step after which the masks are frozen (None: never before exit).
        start_step: steps already taken (a resumed run): at or past ``freeze_at`` the masks are
            frozen on entry.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, decay: float = 2e-4, freeze_at: int | None = None, start_step: int = 0) -> None:
        self.model = model
        self.optimizer = optimizer
        self.decay = decay
        self.freeze_at = freeze_at
        self.step = start_step
        self.frozen_at: int | None = None
        """The step the masks were frozen at before the end of the run (None: they moved to the end)."""
        self.layers: list[tuple[nn.Module, nn.Parameter]] = []
        self._dense: dict[int, torch.Tensor] = {}
        self._handles = []
        self._fixed: MaskGuard | None = None
        self.flips = 0
        """Mask entries that changed between consecutive mask updates, summed over the run."""

    @torch.no_grad()
    def _masked_forward(self, module, args) -> None:
        param = module._parameters["weight"]
        if id(param) in self._dense:
            return  # already masked since the last step
        dense = param.detach().clone()
        mask = magnitude_mask(dense, axis=1)
        self.flips += int((module._weight_mask.bool() != mask).sum())
        module._weight_mask.copy_(mask.to(module._weight_mask.dtype))
        self._dense[id(param)] = dense
        param.mul_(mask.to(param.dtype))  # the forward sees W * M; ModelOpt's own product is then a no-op

    @torch.no_grad()
    def settle(self) -> None:
        """Back to rest: dense weights in the parameters (after forwards without a step, e.g.
        before a training state is saved or an epoch is evaluated)."""
        for _, param in self.layers:
            dense = self._dense.pop(id(param), None)
            if dense is not None:
                param.copy_(dense)

    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs) -> None:
        for module, param in self.layers:
            dense = self._dense.pop(id(param), None)
            if dense is None:
                continue
            param.copy_(dense)
            if param.grad is not None and self.decay:
                param.grad.add_(dense * (~module._weight_mask.bool()).to(dense.dtype), alpha=self.decay)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.step += 1
        if self.freeze_at is not None and self.step >= self.freeze_at and self._fixed is None:
            self.freeze()

    def __enter__(self) -> "LearnedMasks":
        self.layers = [(m, m._parameters["weight"]) for _, m in self.model.named_modules() if getattr(m, "_weight_mask", None) is not None and not bool(m._weight_mask.all())]
        if self.freeze_at is not None and self.step >= self.freeze_at:
            self._fixed = MaskGuard(self.model, self.optimizer).__enter__()  # resumed after the freeze: fixed masks from the start
            self.frozen_at = self.freeze_at
            return self
        self._handles = [module.register_forward_pre_hook(self._masked_forward) for module, _ in self.layers]
        self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
        self._handles.append(self.optimizer.register_step_post_hook(self._after_step))
        return self

    @torch.no_grad()
    def freeze(self, keep_fixed: bool = True) -> None:
        """Stop learning the masks: each layer's mask becomes its dense weight's current 2:4 and
        the pruned entries and their optimizer state become zeros; with ``keep_fixed`` the
        remaining steps keep them there (fixed masks, until exit)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.settle()
        for module, param in self.layers:
            module._weight_mask.copy_(magnitude_mask(param.detach(), axis=1).to(module._weight_mask.dtype))
        enforce_masks_(self.model, self.optimizer)  # frozen: pruned entries and their optimizer state become zeros
        if keep_fixed and self._fixed is None:
            self.frozen_at = self.step
            self._fixed = MaskGuard(self.model, self.optimizer).__enter__()

    @torch.no_grad()
    def __exit__(self, *exc) -> None:
        if self._fixed is not None:
            self._fixed.__exit__(*exc)
            return
        self.freeze(keep_fixed=False)
