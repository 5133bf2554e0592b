"""Pipeline stages. Each reads its inputs from files in the run folder and writes its outputs
there, so any stage can be skipped when its settings and input files did not change.

New stages (fine-tuning, engine builds, benchmarks) plug in by appending to :data:`STAGES`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.recipe.fingerprint import data_fingerprint, source_fingerprint
from sparsekit.recipe.schema import ModelConfig, Recipe

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What a stage sees: the recipe, the run folder, and a progress callback."""

    recipe: Recipe
    run_dir: Path
    say: Callable[[str], None] = lambda msg: None
    cache: dict = field(default_factory=dict)

    def model(self):
        """The model to export: the sparse checkpoint if the recipe sparsifies, else the source model."""
        from sparsekit.models.source import load_model

        if self.recipe.sparsify is not None:
            return load_model(str(self.run_dir / "sparse.pt"))
        return load_source_model(self.recipe.model)


def load_source_model(m: ModelConfig):
    """The recipe's model, with its input options."""
    from sparsekit.models.source import load_model

    return load_model(m.source, dict(m.args), m.input_shapes or None, seq_len=m.seq_len, dynamic_axes=m.dynamic_axes or None)


def model_settings(r: Recipe) -> dict:
    """The model section and the content of what its source reads (a factory file, an hf: folder)."""
    return {**r.model.model_dump(mode="json"), "content": source_fingerprint(r.model.source)}


@dataclass(frozen=True)
class Stage:
    """A pipeline stage.

    Attributes:
        name: unique stage name (``export.fp16``).
        settings: ``settings(recipe) -> dict`` of what the stage depends on, or None to disable it.
        inputs: ``inputs(recipe) -> [file names in the run folder]`` it reads.
        outputs: ``outputs(recipe) -> [file names]`` it writes.
        run: ``run(ctx) -> summary dict`` (stored in the manifest).
    """

    name: str
    settings: Callable[[Recipe], dict | None]
    inputs: Callable[[Recipe], list[str]]
    outputs: Callable[[Recipe], list[str]]
    run: Callable[[StageContext], dict]


def _analyze(ctx: StageContext) -> dict:
    from sparsekit.analyze.torch_layers import analyze_model

    report = analyze_model(load_source_model(ctx.recipe.model))
    write_json_atomic(ctx.run_dir / "analysis.json", report.to_dict())
    return report.summary


def _sparsify(ctx: StageContext) -> dict:
    from sparsekit.models.calib import calibration_for
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.bench.select import resolve_layer_patterns
    from sparsekit.sparsify.sparsify import sparsify_

    s = ctx.recipe.sparsify
    loaded = load_source_model(ctx.recipe.model)
    needs = s.method == "sparsegpt" or s.calib or s.calib_text
    calib = calibration_for(loaded, s.calib, s.calib_text, s.calib_samples) if needs else None
    include, exclude = resolve_layer_patterns(s.include, s.exclude, s.include_from, s.exclude_from)
    loaded.model, report = sparsify_(loaded.model, s.method, include, exclude, calib, permute=s.permute, untie_tied=s.untie_tied)
    write_json_atomic(ctx.run_dir / "sparsify.json", report.to_dict())
    save_checkpoint(loaded, ctx.run_dir / "sparse.pt", {"sparsify": {k: v for k, v in report.to_dict().items() if k != "check"}})
    return {"sparsified": len(report.sparsified), "layers": len(report.layers), "seconds": round(report.seconds, 2)}


def _list_contents(r: Recipe) -> dict:
    """Contents of include/exclude list files and calibration data: a change must re-run sparsify."""
    from sparsekit.bench.select import read_layer_list

    s = r.sparsify
    lists = {k: read_layer_list(path, k) for k, path in (("include", s.include_from), ("exclude", s.exclude_from)) if path}
    data = {k: data_fingerprint(v) for k, v in (("calib", s.calib), ("calib_text", s.calib_text)) if v}
    return {**lists, **({"data": data} if data else {})}


def _export_stage(precision: str) -> Stage:
    def run(ctx: StageContext) -> dict:
        from sparsekit.export.export import export_
        from sparsekit.models.calib import calibration_for

        e = ctx.recipe.export
        loaded = ctx.model()
        calib = calibration_for(loaded, e.calib, e.calib_text, e.calib_samples) if precision == "int8" else None
        result = export_(loaded, precision, ctx.run_dir / f"model.{precision}.onnx", calib, force=True, opset=e.opset, progress=lambda msg: ctx.say(f"export.{msg}"))
        return {"size_bytes": result.size_bytes, "sparse_layers_verified": len(result.sparsified), "max_rel_err": result.parity.max_rel, "seconds": round(result.seconds, 2)}

    def settings(r: Recipe):
        if r.export is None or precision not in r.export.precisions:
            return None
        data = {k: data_fingerprint(v) for k, v in (("calib", r.export.calib), ("calib_text", r.export.calib_text)) if v and precision == "int8"}
        return {"export": r.export.model_dump(mode="json", exclude={"precisions"}), "precision": precision, "model": None if r.sparsify else model_settings(r), **({"data": data} if data else {})}

    return Stage(
        f"export.{precision}", settings,
        lambda r: ["sparse.pt"] if r.sparsify else [],
        lambda r: [f"model.{precision}.onnx", f"model.{precision}.report.json"],
        run,
    )


def _report(ctx: StageContext) -> dict:
    from sparsekit.recipe.summary import write_summary

    return write_summary(ctx.recipe, ctx.run_dir)


STAGES: list[Stage] = [
    Stage("analyze", lambda r: {"model": model_settings(r)}, lambda r: [], lambda r: ["analysis.json"], _analyze),
    Stage(
        "sparsify",
        lambda r: None if r.sparsify is None else {"model": model_settings(r), "sparsify": r.sparsify.model_dump(mode="json"), "lists": _list_contents(r)},
        lambda r: [], lambda r: ["sparse.pt", "sparsify.json"], _sparsify,
    ),
    *[_export_stage(p) for p in ("fp32", "fp16", "int8")],
    Stage(
        "report", lambda r: {"name": r.name},
        lambda r: ["analysis.json", *(["sparsify.json"] if r.sparsify else []), *[f"model.{p}.report.json" for p in (r.export.precisions if r.export else [])]],
        lambda r: ["summary.json", "summary.md"], _report,
    ),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
