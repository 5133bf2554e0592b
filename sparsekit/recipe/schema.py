"""The recipe: one strict, versioned YAML file describing a whole run.

Unknown keys are errors (``extra="forbid"``); ``version`` selects the schema. The canonical JSON
of each section is what the runner hashes to decide whether a stage must run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from sparsekit.config import StrictConfig

from sparsekit.errors import RecipeError

RECIPE_VERSION = 1


_Strict = StrictConfig


class ModelConfig(_Strict):
    """Where the model comes from (see ``sparsekit models``)."""

    source: str = Field(description="zoo name, path/file.py:factory, pkg.module:factory or torchvision:NAME")
    args: dict[str, str | int | float | bool] = Field(default_factory=dict, description="keyword arguments of the zoo entry / factory")
    input_shapes: list[str] = Field(default_factory=list, description="override input shapes, [name:]DxD[:dtype]")


class SparsifyConfig(_Strict):
    """2:4 sparsification through ModelOpt."""

    method: Literal["magnitude", "sparsegpt"] = "magnitude"
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    include_from: str | None = Field(None, description="JSON from 'sparsekit select' (include list) or a text file of layer names")
    exclude_from: str | None = Field(None, description="JSON with an 'exclude' list (sensitivity analysis) or a text file of layer names")
    calib: str | None = Field(None, description="calibration data (.pt/.npy/.npz or module:fn); null = random inputs")
    calib_samples: int = Field(64, ge=1)
    permute: bool = Field(False, description="search channel permutations first (same dense function, more magnitude kept by 2:4)")


class ExportConfig(_Strict):
    """Typed ONNX variants, each verified (2:4 + ONNX Runtime parity)."""

    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(default_factory=lambda: ["fp32", "fp16", "int8"])
    opset: int = Field(17, ge=13, le=23)
    calib: str | None = None
    calib_samples: int = Field(128, ge=1)

    @field_validator("precisions")
    @classmethod
    def _unique(cls, v):
        if not v or len(set(v)) != len(v):
            raise ValueError("precisions must be a non-empty list without repeats")
        return v


class Recipe(_Strict):
    """A whole run: model -> analyze -> sparsify -> export (-> later stages)."""

    version: Literal[1] = RECIPE_VERSION
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$")
    model: ModelConfig
    sparsify: SparsifyConfig | None = SparsifyConfig()
    export: ExportConfig | None = ExportConfig()


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe YAML file.

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
    return recipe_from_dict(data, str(p))


def recipe_from_dict(data, label: str = "recipe") -> Recipe:
    """Validate a parsed recipe mapping (see :func:`load_recipe`)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{label} must be a mapping with 'version' and 'model'", "see 'sparsekit demo --show-recipe'")
    if data.get("version") not in (None, RECIPE_VERSION):
        raise RecipeError(f"{label} has version {data.get('version')!r}; this sparsekit reads version {RECIPE_VERSION}", f"set 'version: {RECIPE_VERSION}'")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise RecipeError(f"{label}: '{where}': {err['msg']}", "fix that setting (unknown keys are not allowed)") from exc
