"""The recipe: one strict, versioned YAML file describing a whole run.

Unknown keys are errors (``extra="forbid"``); ``version`` selects the schema. The canonical JSON
of each section is what the runner hashes to decide whether a stage must run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from sparsekit.config import StrictConfig
from sparsekit.data.config import DataConfig

from sparsekit.errors import RecipeError, SparsekitError
from sparsekit.export.config import ExportConfig
from sparsekit.prune.config import PruneConfig
from sparsekit.recover.config import FinetuneConfig
from sparsekit.sparsify.config import SparsifyConfig
from sparsekit.models.hf import PREFIX
from sparsekit.tasks.base import check_task_options

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


class Recipe(_Strict):
    """A whole run: model -> analyze -> [prune] -> sparsify -> [finetune] -> export."""

    version: Literal[1] = Field(RECIPE_VERSION, description="recipe schema version")
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$", description="run name; the default run folder is runs/<name>")
    model: ModelConfig = Field(description="the model and its inputs")
    task: str | None = Field(None, description="task giving data and metric to prune.schedule and finetune ('digits', 'docstrings', or your FILE.py:make_task, run because the recipe names it); default with 'data': your data")
    task_args: dict[str, str | int | float | bool] = Field(default_factory=dict, description="task options, e.g. docstrings: {eval_split: eval_large, corpus: broad}; digits: {image_size: 32}")
    data: DataConfig | None = Field(None, description="your own data, used by every stage that reads data: SparseGPT and INT8 calibration (its first training items), finetune (distillation from the recipe's model as loaded, QAT), the prune loop and evaluation; with a registered 'task', pass that task's data file in task_args instead")
    prune: PruneConfig | None = Field(None, description="coarse-grained pruning before 2:4; null = none")
    sparsify: SparsifyConfig | None = Field(SparsifyConfig(), description="2:4 sparsification; null exports the dense model")
    finetune: FinetuneConfig | None = Field(None, description="fine-tuning after sparsify (with 'task'); null = none")
    export: ExportConfig | None = Field(ExportConfig(), description="ONNX variants; null stops after sparsify")

    @model_validator(mode="after")
    def _consistent(self):
        if self.task is not None and ":" not in self.task:
            _check_task(self.task, self.task_args)
        if self.data is not None and not self.data.source:
            raise ValueError("data needs a 'source' (the file or folder of your data)")
        if self.task is not None and ":" not in self.task and self.data is not None:
            raise ValueError(f"task '{self.task}' brings its own data: give its data file in task_args (data: PATH), or drop 'task' to use your 'data'")
        if self.task is None and self.data is None and (self.finetune is not None or (self.prune is not None and (self.prune.schedule or self.prune.importance == "taylor"))):
            raise ValueError("finetune, prune.schedule and prune.importance 'taylor' need a 'task' (e.g. task: digits) or your 'data' (data: {source: train.csv})")
        if self.finetune is not None and self.finetune.quantize and self.export is not None and self.export.precisions != ["int8"]:
            raise ValueError(f"finetune.quantize {self.finetune.quantize} makes a QAT model: set export.precisions to [int8] (or export: null for fp8)" if self.finetune.quantize == "int8" else "finetune.quantize fp8 makes an FP8 QAT model, which export does not write: set export: null")
        return self


def _check_task(task: str, options: dict) -> None:
    """The task's own option check, as a validation error of the recipe."""
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
    if isinstance(out.get("task"), str) and ":" in out["task"]:
        out["task"] = _resolve(out["task"], base)
    section = out.get("data")
    if isinstance(section, dict):
        fixed = {k: _resolve(section[k], base) for k in ("preprocess",) if isinstance(section.get(k), str)}
        if isinstance(section.get("source"), str):  # always a path: an image folder has no suffix
            source = Path(section["source"]).expanduser()
            fixed["source"] = str(source if source.is_absolute() else (base / source).resolve())
        out["data"] = {**section, **fixed}
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
