"""The settings of training (:class:`TrainingConfig`, the input of
:func:`sparsekit.recover.finetune.finetune_`) and of the finetune stage (:class:`FinetuneConfig`,
the input of :func:`sparsekit.recover.task_finetune.finetune_stage_`, the options of ``sparsekit
finetune`` and the ``finetune:`` section of a recipe), each declared once. Light on purpose (the CLI
imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsekit.config import StrictConfig
from sparsekit.quantize.config import QuantizeConfig


class TrainingConfig(StrictConfig):
    """Optimizer and schedule settings of one training run."""

    epochs: int = Field(3, ge=1, description="passes over the training batches")
    lr: float = Field(5e-5, gt=0, description="peak learning rate (linear warm-up, then cosine decay to 0)")
    warmup: float = Field(0.06, ge=0, le=0.5, description="share of the steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay (AdamW) or L2 (SGD)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw, or sgd with momentum")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    grad_clip: float = Field(1.0, ge=0, description="max gradient L2 norm, 0 = off")
    seed: int = Field(0, description="seed of the batch order and dropout")
    save_every: int = Field(0, ge=0, description="also save the training state every N steps (0: at the end of each epoch only)")
    bn_l1: float = Field(0.0, ge=0, description="network slimming: L1 penalty bn_l1 * sum|gamma| on every BatchNorm scale, so that unimportant channels go to zero (e.g. 1e-4); then 'sparsekit prune --importance bn' removes them", json_schema_extra={"metavar": "LAMBDA"})
    keep_zeros: bool = Field(False, description="weights that are exactly zero when training starts stay zero (after 'sparsekit prune --granularity unstructured'); 2:4 masks are kept either way")
    masks: Literal["fixed", "learned"] = Field("fixed", description="fixed: the 2:4 masks of sparsify stay; learned: SR-STE, masks recomputed from the dense weights every step (TensorRT layout), weights may move between kept and pruned, masks frozen and checked at the end")
    mask_decay: float = Field(2e-4, ge=0, description="SR-STE decay of the pruned weights with masks learned", json_schema_extra={"metavar": "LAMBDA"})
    mask_update_until: float = Field(1.0, gt=0, le=1, description="with masks learned: share of the training steps during which the masks move; then they are frozen and the rest of the run trains with fixed masks (1: to the end)", json_schema_extra={"metavar": "SHARE"})


class ReconstructConfig(StrictConfig):
    """Block-wise output reconstruction before training (:mod:`sparsekit.recover.reconstruct`)."""

    reconstruct_steps: int = Field(0, ge=0, description="before training: block-wise reconstruction, N steps per block (each block of the 2:4 model trained, masks fixed, to reproduce the dense teacher's block output from its own input, on calibration data); needs a teacher and a model with blocks; 0: off", json_schema_extra={"metavar": "N"})
    reconstruct_lr: float = Field(1e-4, gt=0, description="peak learning rate of the block reconstruction (cosine to 0 in each block)")
    reconstruct_samples: int = Field(256, ge=1, description="calibration samples the block reconstruction trains on (from the task)")


class FinetuneConfig(TrainingConfig, QuantizeConfig, ReconstructConfig):
    """The finetune stage: training with the 2:4 masks kept, distilled from the dense model when
    there is a teacher, optionally repaired block by block first and quantized first (QAT)."""

    batch_size: int = Field(32, ge=1, description="training batch size")
    distill: bool = Field(True, description="recipes: distil from the recipe's model as loaded (before prune and sparsify); the command line distils when --teacher is given", json_schema_extra={"cli": False})
    features: bool = Field(False, description="distillation also matches the task's feature layers (e.g. each encoder layer's output)")
    student_loss_weight: float = Field(0.0, ge=0, le=1, description="share of the task's own loss next to distillation", json_schema_extra={"metavar": "W"})
    temperature: float = Field(1.0, gt=0, description="logit-KD temperature")
    eval_each_epoch: bool = Field(False, description="evaluate on the task's held-out data after every epoch (shown in the progress bar, kept in the metadata)")

    def training(self) -> TrainingConfig:
        """The optimizer and schedule part."""
        return TrainingConfig(**{k: getattr(self, k) for k in TrainingConfig.model_fields})
