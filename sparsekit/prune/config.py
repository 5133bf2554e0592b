"""The settings of the prune stage, declared once: the input of
:func:`sparsekit.recover.prune_loop.prune_stage_`, the options of ``sparsekit prune`` and the
``prune:`` section of a recipe. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sparsekit.config import StrictConfig

GRANULARITIES = ("channel", "unstructured", "low-rank")
"""What pruning removes (``low_rank`` is accepted for ``low-rank``)."""
IMPORTANCES = ("l1", "l2", "bn", "taylor")
"""Channel rankings."""


class PruneConfig(StrictConfig):
    """Coarse-grained pruning before 2:4; with a schedule (and a task), the prune -> fine-tune loop."""

    granularity: Literal[GRANULARITIES] = Field("channel", description="what to remove: channel (filters, heads, FFN neurons: a smaller dense model), unstructured (zeros, no GPU speedup), low-rank (truncated SVD of Linear layers)")
    ratio: float = Field(0.25, ge=0, lt=1, description="channel: share of each layer's output channels removed (one step; see schedule)", json_schema_extra={"metavar": "R"})
    importance: Literal[IMPORTANCES] = Field("l1", description="channel ranking: l1/l2 filter norm, bn = BatchNorm |gamma| (network slimming: train with 'finetune --bn-l1' first), taylor = |w * dL/dw| (needs a task with labels)")
    round_to: int = Field(16, ge=1, description="keep widths (and low-rank ranks) at multiples of N (16: ModelOpt 2:4-sparsifies only layers whose input channels are a multiple of 16, and INT8 Tensor Cores want 16; 8 suffices for fp16 alone; 1 = exact ratio)")
    layer_ratio: list[str] = Field(default_factory=list, description="channel: PATTERN=R, ratio for layers matching the fnmatch PATTERN instead of ratio (repeatable)", json_schema_extra={"metavar": "PATTERN=R"})
    head_ratio: float | None = Field(None, ge=0, lt=1, description="channel: share of attention heads removed per block (default: ratio)", json_schema_extra={"metavar": "R"})
    global_ranking: bool = Field(False, description="channel: rank channels across layers (widths then differ per layer)", json_schema_extra={"flags": ["--global"]})
    exclude: list[str] = Field(default_factory=list, description="layers that keep their width (channel) or are left alone (unstructured, low-rank); repeatable")
    include: list[str] = Field(default_factory=lambda: ["*"], description="unstructured, low-rank: layers to prune (repeatable)")
    schedule: list[float] | None = Field(None, description="channel, with a task: the prune -> fine-tune loop, cumulative shares of the original channels removed after each step, e.g. 0.25,0.5 (default: one step to ratio)", json_schema_extra={"metavar": "R1,R2,..."})
    max_drop: float = Field(1.0, ge=0, description="loop: stop when the task metric falls more than this many points below the unpruned model", json_schema_extra={"metavar": "POINTS"})
    epochs: int = Field(2, ge=1, description="loop: fine-tuning epochs per step")
    lr: float = Field(1e-3, gt=0, description="loop: fine-tuning peak learning rate")
    batch_size: int = Field(32, ge=1, description="loop (and taylor importance): batch size")
    student_loss_weight: float = Field(0.5, ge=0, le=1, description="loop: share of the task's own loss next to distillation (label-free tasks use 0)", json_schema_extra={"metavar": "W"})
    amount: float = Field(0.5, ge=0, lt=1, description="unstructured: share of weights zeroed", json_schema_extra={"metavar": "S"})
    threshold: float | None = Field(None, ge=0, description="unstructured: zero every weight with |w| < T instead of an amount", json_schema_extra={"metavar": "T"})
    scope: Literal["layer", "global"] = Field("layer", description="unstructured: amount per layer or one cut across layers")
    rank_fraction: float = Field(0.5, gt=0, lt=1, description="low-rank: rank as a share of min(in, out)", json_schema_extra={"metavar": "F"})

    @field_validator("granularity", mode="before")
    @classmethod
    def _dash(cls, v):
        return v.replace("_", "-") if isinstance(v, str) else v

    @field_validator("layer_ratio")
    @classmethod
    def _pairs(cls, v):
        for item in v:
            pattern, sep, value = item.rpartition("=")
            try:
                share = float(value)
            except ValueError:
                sep = ""
            if not sep or not pattern or not 0 <= share < 1:
                raise ValueError(f"'{item}' is not PATTERN=R with R in [0, 1), e.g. 'stages.2.*=0.5'")
        return v

    @field_validator("schedule")
    @classmethod
    def _increasing(cls, v):
        if v is not None and (not v or any(not 0 < x < 1 for x in v) or any(b <= a for a, b in zip(v, v[1:]))):
            raise ValueError("schedule must be a non-empty increasing list of shares in (0, 1), e.g. 0.25,0.5")
        return v

    @property
    def layer_ratios(self) -> dict[str, float]:
        """``layer_ratio`` as ``{pattern: share}``."""
        return {p: float(r) for p, _, r in (item.rpartition("=") for item in self.layer_ratio)}
