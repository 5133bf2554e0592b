"""The settings of ``sparsekit plan``, declared once: the input of
:func:`sparsekit.plan.planner.plan_sparsity` and the options of the command. Light on purpose (the
CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsekit.models.calib_settings import DEFAULT_CALIB_SAMPLES
from sparsekit.recover.config import ReconstructConfig
from sparsekit.sparsify.config import MethodName


class PlanConfig(ReconstructConfig):
    """How the plan measures accuracy, estimates speed, refines its frontier and recovers its
    fastest points (block reconstruction with ``reconstruct_steps``, then distillation)."""

    method: MethodName = Field("magnitude", description="2:4 method whose masks are planned, the one you will sparsify with: magnitude, or sparsegpt (calibrated on the task's data)")
    calib_samples: int = Field(DEFAULT_CALIB_SAMPLES, ge=1, description="calibration samples from the task's data (sparsegpt)")
    batch: int = Field(8, ge=1, description="deployment batch size: sets each layer's GEMM rows (M) and FLOP share")
    dtype: Literal["float16", "bfloat16"] = Field("float16", description="GEMM precision looked up in the speed table")
    max_drop: float = Field(1.0, ge=0, description="largest loss of the primary metric (its units, e.g. points) the chosen plan may have", json_schema_extra={"metavar": "POINTS"})
    points: int = Field(12, ge=0, description="one-shot evaluations along the order (spread by expected speed); 0: every step")
    refine: int = Field(1, ge=1, description="greedy refinement: at each step, evaluate the next N layers of the order with the others as they are and keep dense the one that buys most metric per time lost (1: the order as measured alone; >1 evaluates every step)", json_schema_extra={"metavar": "N"})
    rank_by: str | None = Field(None, description="metric whose per-layer loss orders the layers (default: the task's primary metric; e.g. fidelity, smoother than recall@1 on small evaluation sets)", json_schema_extra={"metavar": "METRIC"})
    distill_points: int = Field(2, ge=0, description="frontier points recovered (the fastest ones that might reach --max-drop): block reconstruction when --reconstruct-steps > 0, then distillation from the dense model when --distill-epochs > 0; 0: one-shot only")
    distill_epochs: int = Field(1, ge=0, description="epochs of that short distillation (0: reconstruction only)")
    lr: float = Field(3e-4, gt=0, description="peak learning rate of the distillation")
    batch_size: int = Field(32, ge=1, description="distillation batch size")
    features: bool = Field(False, description="distillation also matches the task's feature layers")
