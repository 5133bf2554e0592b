"""The recipe: one strict, versioned YAML file describing a whole run.

Unknown keys are errors (``extra="forbid"``); ``version`` selects the schema. The canonical JSON
of each section is what the runner hashes to decide whether a stage must run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sparsekit.config import StrictConfig

from sparsekit.errors import RecipeError

RECIPE_VERSION = 1


_Strict = StrictConfig


class ModelConfig(_Strict):
    """Where the model comes from (see ``sparsekit models``) and what its inputs are."""

    source: str = Field(description="zoo name, path/file.py:factory, pkg.module:factory, torchvision:NAME, hf:DIR (a Hugging Face save_pretrained folder) or a checkpoint .pt; relative paths are read from the recipe's folder")
    args: dict[str, str | int | float | bool] = Field(default_factory=dict, description="keyword arguments of the zoo entry / factory (for hf:DIR: config overrides, architecture, attn_implementation)")
    input_shapes: list[str] = Field(default_factory=list, description="inputs replacing the model's own, [name:]DxD[:dtype][:LOW..HIGH] (LOW..HIGH: value range of an integer input, HIGH excluded)")
    seq_len: int | None = Field(None, ge=1, description="size of the input axes labelled 'sequence' (Hugging Face text models: default 128)")
    dynamic_axes: list[str] = Field(default_factory=list, description="more dynamic input axes, NAME:AXIS[=LABEL] (axis 0, the batch, always is)")
    trust_remote_code: bool = Field(False, description="let an hf:DIR folder run its own Python (auto_map); the recipe is your program, so this is your choice, never a prompt")
    max_params: int | None = Field(None, ge=1, description="largest model (parameters) a file's description may build (default 20 B)")


class SparsifyConfig(_Strict):
    """2:4 sparsification through ModelOpt."""

    method: Literal["magnitude", "sparsegpt"] = Field("magnitude", description="magnitude (no data) or sparsegpt (calibrated, Hessian-based)")
    include: list[str] = Field(default_factory=lambda: ["*"], description="fnmatch patterns of layer names to sparsify")
    exclude: list[str] = Field(default_factory=list, description="fnmatch patterns of layer names to keep dense")
    include_from: str | None = Field(None, description="JSON from 'sparsekit select' (include list) or a text file of layer names")
    exclude_from: str | None = Field(None, description="JSON with an 'exclude' list (sensitivity analysis) or a text file of layer names")
    calib: str | None = Field(None, description="calibration data (.pt/.npy/.npz or module:fn); null = random inputs")
    calib_text: str | None = Field(None, description="calibration text file, one sample per line, tokenized by the hf:DIR model's tokenizer")
    calib_samples: int = Field(64, ge=1, description="random calibration samples (or lines of calib_text used)")
    permute: bool = Field(False, description="search channel permutations first (same dense function, more magnitude kept by 2:4)")
    untie_tied: bool = Field(False, description="also sparsify layers whose weight is tied to another parameter (e.g. lm_head and the token embedding), each with its own copy (+ its size)")


class PruneConfig(_Strict):
    """Coarse-grained pruning before 2:4 (see ``sparsekit prune --help``)."""

    granularity: Literal["channel", "unstructured", "low_rank"] = Field("channel", description="channel (filters, heads, FFN neurons removed: a smaller dense model), unstructured (zeros, no GPU speedup), low_rank (truncated SVD of Linear layers)")
    ratio: float = Field(0.25, ge=0, lt=1, description="channel: share of each layer's output channels removed (one step; see schedule)")
    importance: Literal["l1", "l2", "bn", "taylor"] = Field("l1", description="channel ranking: l1 / l2 filter norm, bn (BatchNorm |gamma|), taylor (needs a task with labels)")
    round_to: int = Field(16, ge=1, description="channel widths and low-rank ranks kept at multiples of this (16: ModelOpt 2:4 needs input channels % 16)")
    exclude: list[str] = Field(default_factory=list, description="fnmatch patterns of layers left as they are")
    global_ranking: bool = Field(False, description="channel: rank across layers instead of the same share per layer")
    head_ratio: float | None = Field(None, ge=0, lt=1, description="channel: share of attention heads removed (default: ratio)")
    schedule: list[float] | None = Field(None, description="channel: prune -> fine-tune loop, cumulative shares removed after each step (needs 'task'); null = one step to ratio without fine-tuning")
    max_drop: float = Field(1.0, ge=0, description="loop: stop when the task metric falls more than this many points below the unpruned model")
    epochs: int = Field(2, ge=1, description="loop: fine-tuning epochs per step")
    lr: float = Field(1e-3, gt=0, description="loop: fine-tuning peak learning rate")
    batch_size: int = Field(32, ge=1, description="loop: fine-tuning batch size")
    amount: float = Field(0.5, ge=0, lt=1, description="unstructured: share of weights zeroed per layer")
    rank_fraction: float = Field(0.5, gt=0, lt=1, description="low_rank: rank as a share of min(in, out)")


class FinetuneConfig(_Strict):
    """Fine-tuning after sparsify, masks fixed, distilled from the recipe's (unpruned, dense) model; optionally INT8/FP8 QAT."""

    epochs: int = Field(3, ge=1, description="passes over the task's training data")
    lr: float = Field(5e-5, gt=0, description="peak learning rate (warm-up, then cosine decay)")
    batch_size: int = Field(32, ge=1, description="training batch size")
    distill: bool = Field(True, description="distil from the recipe's model as loaded (before prune and sparsify)")
    features: bool = Field(False, description="distillation also matches the task's feature layers")
    student_loss_weight: float = Field(0.0, ge=0, le=1, description="share of the task's own loss next to distillation")
    masks: Literal["fixed", "learned"] = Field("fixed", description="fixed 2:4 masks, or learned ones (SR-STE, frozen and checked at the end)")
    quantize: Literal["int8", "fp8"] | None = Field(None, description="quantize first, then train (QAT); the export must then be of that precision")
    calib_method: Literal["max", "entropy", "percentile", "mse"] = Field("max", description="activation calibration of quantize")
    calib_samples: int = Field(256, ge=1, description="calibration samples of quantize (from the task)")
    no_quant: list[str] = Field(default_factory=list, description="fnmatch patterns of layers kept unquantized")


class ExportConfig(_Strict):
    """Typed ONNX variants, each verified (2:4 + ONNX Runtime parity)."""

    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32", "fp16", "int8"], description="ONNX variants to write, each verified")
    opset: int = Field(17, ge=13, le=23, description="ONNX opset (raised where a variant needs more)")
    calib: str | None = Field(None, description="INT8 calibration data (.pt/.npy/.npz or module:fn); null = random inputs")
    calib_text: str | None = Field(None, description="INT8 calibration text file, one sample per line, tokenized by the hf:DIR model's tokenizer")
    calib_samples: int = Field(128, ge=1, description="random INT8 calibration samples (or lines of calib_text used)")

    @field_validator("precisions")
    @classmethod
    def _unique(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError("precisions must be a non-empty list without repeats")
        return v


class Recipe(_Strict):
    """A whole run: model -> analyze -> [prune] -> sparsify -> [finetune] -> export."""

    version: Literal[1] = Field(RECIPE_VERSION, description="recipe schema version")
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$", description="run name; the default run folder is runs/<name>")
    model: ModelConfig = Field(description="the model and its inputs")
    task: str | None = Field(None, description="task giving data and metric to prune.schedule and finetune ('digits', 'docstrings')")
    task_args: dict[str, str | int | float | bool] = Field(default_factory=dict, description="task options, e.g. docstrings: {eval_split: eval_large, corpus: broad}; digits: {image_size: 32}")
    prune: PruneConfig | None = Field(None, description="coarse-grained pruning before 2:4; null = none")
    sparsify: SparsifyConfig | None = Field(SparsifyConfig(), description="2:4 sparsification; null exports the dense model")
    finetune: FinetuneConfig | None = Field(None, description="fine-tuning after sparsify (with 'task'); null = none")
    export: ExportConfig | None = Field(ExportConfig(), description="ONNX variants; null stops after sparsify")

    @model_validator(mode="after")
    def _consistent(self):
        if self.task is not None:
            _check_task(self.task, self.task_args)
        if self.task is None and (self.finetune is not None or (self.prune is not None and (self.prune.schedule or self.prune.importance == "taylor"))):
            raise ValueError("finetune, prune.schedule and prune.importance 'taylor' need a 'task' (e.g. task: digits)")
        if self.finetune is not None and self.finetune.quantize and self.export is not None and self.export.precisions != ["int8"]:
            raise ValueError(f"finetune.quantize {self.finetune.quantize} makes a QAT model: set export.precisions to [int8] (or export: null for fp8)" if self.finetune.quantize == "int8" else "finetune.quantize fp8 makes an FP8 QAT model, which export does not write: set export: null")
        if self.prune is not None and self.prune.schedule is not None:
            v = self.prune.schedule
            if not v or any(not 0 < x < 1 for x in v) or any(b <= a for a, b in zip(v, v[1:])):
                raise ValueError("prune.schedule must be a non-empty increasing list of shares in (0, 1), e.g. [0.25, 0.5]")
        return self


def _check_task(task: str, options: dict) -> None:
    """The task's own option check, as a validation error of the recipe."""
    from sparsekit.errors import SparsekitError
    from sparsekit.tasks.base import check_task_options

    try:
        check_task_options(task, options)
    except SparsekitError as exc:
        raise ValueError(exc.problem) from exc


def recipe_schema() -> dict:
    """The recipe's JSON Schema (every field with its description)."""
    return Recipe.model_json_schema()


_PATH_FIELDS = {"sparsify": ("calib", "calib_text", "include_from", "exclude_from"), "export": ("calib", "calib_text")}


def _resolve(value: str, base: Path) -> str:
    """``value`` read from ``base`` when it is a relative file path (``file.py:fn``, ``hf:DIR``, a data
    file); names (zoo entries, ``pkg.module:fn``) are left alone."""
    from sparsekit.models.hf import PREFIX

    def rel(path: str) -> str:
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    if value.startswith(PREFIX):
        return PREFIX + rel(value[len(PREFIX):])
    target, sep, attr = value.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{rel(target)}:{attr}"
    if sep or "/" not in value and not Path(value).suffix:
        return value  # module:function, torchvision:NAME, or a zoo name
    return rel(value)


def resolve_paths(data: dict, base: Path) -> dict:
    """A copy of a parsed recipe with its relative paths read from the recipe's folder ``base``."""
    out = dict(data)
    model = out.get("model")
    if isinstance(model, dict) and isinstance(model.get("source"), str):
        out["model"] = {**model, "source": _resolve(model["source"], base)}
    for section, keys in _PATH_FIELDS.items():
        part = out.get(section)
        if isinstance(part, dict):
            out[section] = {**part, **{k: _resolve(part[k], base) for k in keys if isinstance(part.get(k), str)}}
    return out


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe YAML file; relative paths in it are read from its folder.

    Raises:
        RecipeError: missing file, bad YAML, or a setting the schema forbids (named in the message).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"recipe '{p}' does not exist", "check the path; 'sparsekit demo --show-recipe' prints an example")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe '{p}' is not valid YAML: {str(exc).splitlines()[0]}", "fix the YAML syntax") from exc
    except RecursionError as exc:  # PyYAML parses nested collections recursively
        raise RecipeError(f"recipe '{p}' nests lists or mappings too deeply to read", "a recipe nests a few levels; fix the YAML") from exc
    return recipe_from_dict(data, str(p), base=p.resolve().parent)


def recipe_from_dict(data, label: str = "recipe", base: Path | None = None) -> Recipe:
    """Validate a parsed recipe mapping (see :func:`load_recipe`).

    Args:
        data: the parsed YAML.
        label: how errors name the recipe.
        base: the recipe file's folder: relative paths in the recipe are read from there.
    """
    if not isinstance(data, dict):
        raise RecipeError(f"{label} must be a mapping with 'version' and 'model'", "see 'sparsekit demo --show-recipe'")
    if data.get("version") not in (None, RECIPE_VERSION):
        raise RecipeError(f"{label} has version {data.get('version')!r}; this sparsekit reads version {RECIPE_VERSION}", f"set 'version: {RECIPE_VERSION}'")
    if base is not None:
        data = resolve_paths(data, base)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise RecipeError(f"{label}: '{where}': {err['msg']}", "fix that setting (unknown keys are not allowed)") from exc
