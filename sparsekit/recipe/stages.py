"""Pipeline stages. Each reads its inputs from files in the run folder and writes its outputs
there, so any stage can be skipped when its settings and input files did not change.

Stages that change the model (prune, sparsify, finetune) each write a checkpoint; the next one reads the newest (:func:`model_file`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.recipe.fingerprint import data_fingerprint, folder_fingerprint, source_fingerprint
from sparsekit.recipe.schema import ModelConfig, Recipe
from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.data.calib import data_calibration
from sparsekit.errors import TrainingStateError
from sparsekit.export.export import export_all_
from sparsekit.models.checkpoint import save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.recipe.summary import write_summary
from sparsekit.recover.prune_loop import prune_stage_
from sparsekit.recover.task_finetune import finetune_stage_
from sparsekit.sparsify.layer_lists import read_layer_list
from sparsekit.sparsify.sparsify import sparsify_loaded_
from sparsekit.tasks import get_task, user_task
from sparsekit.tasks.data_task import make_data_task
from sparsekit.quantize.ptq import quantize_

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What a stage sees: the recipe, the run folder, and a progress callback."""

    recipe: Recipe
    run_dir: Path
    say: Callable[[str], None] = lambda msg: None
    cache: dict = field(default_factory=dict)

    def model(self, before: str | None = None):
        """The newest model of the run (the checkpoint of the last model-changing stage, else the
        source model); with ``before``, the newest one that stage reads."""
        latest = model_file(self.recipe, before)
        return load_model(str(self.run_dir / latest)) if latest else load_source_model(self.recipe.model)

    def task(self):
        """The recipe's task: a registered one, your ``FILE.py:make_task``, or the task of your ``data``
        (fed to the recipe's model as loaded: its inputs, processors and family)."""
        if "task" not in self.cache:
            r = self.recipe
            if r.task and ":" in r.task:
                self.cache["task"] = user_task(r.task, **({"data": r.data.source} if r.data else {}), **r.task_args)
            elif r.task:
                self.cache["task"] = get_task(r.task, **r.task_args)
            else:
                self.cache["task"] = make_data_task(load_source_model(r.model), r.data)
        return self.cache["task"]

    def calibrated(self, config, loaded, needed: bool):
        """``config`` (a stage's calibration settings) calibrating on the first training items of
        the recipe's ``data`` when the stage needs calibration and names no file of its own."""
        if not needed or self.recipe.data is None or config.calib or config.calib_text:
            return config

        return config.with_batches(data_calibration(loaded, self.recipe.data, config.calib_samples))


_MODEL_FILES = (("prune", "pruned.pt"), ("sparsify", "sparse.pt"), ("finetune", "tuned.pt"))
"""Stages that write a new model, in run order, and the checkpoint each writes."""


def model_file(r: Recipe, before: str | None = None) -> str | None:
    """The checkpoint holding the newest model of recipe ``r`` (None: the source model); with
    ``before``, the newest one written by a stage that runs before stage ``before``."""
    latest = None
    for stage, name in _MODEL_FILES:
        if stage == before:
            break
        if getattr(r, stage) is not None:
            latest = name
    return latest


def _model_inputs(r: Recipe, before: str | None = None) -> list[str]:
    latest = model_file(r, before)
    return [latest] if latest else []


def load_source_model(m: ModelConfig):
    """The recipe's model, with its input options."""
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
    report = analyze_model(ctx.model(before="sparsify"))  # the model sparsify sees (pruned, when the recipe prunes)
    write_json_atomic(ctx.run_dir / "analysis.json", report.to_dict())
    return report.summary


def _sparsify(ctx: StageContext) -> dict:
    loaded = ctx.model(before="sparsify")
    config = ctx.calibrated(ctx.recipe.sparsify, loaded, ctx.recipe.sparsify.needs_calibration)
    report = sparsify_loaded_(loaded, config)
    write_json_atomic(ctx.run_dir / "sparsify.json", report.to_dict())
    save_checkpoint(loaded, ctx.run_dir / "sparse.pt", {"sparsify": {k: v for k, v in report.to_dict().items() if k != "check"}})
    return {"sparsified": len(report.sparsified), "layers": len(report.layers), "seconds": round(report.seconds, 2)}


def _prune(ctx: StageContext) -> dict:
    import shutil

    p = ctx.recipe.prune
    if p.granularity == "channel" and p.schedule:
        steps = ctx.run_dir / "prune.steps"

        def loop(resume: bool):
            return prune_stage_(load_source_model(ctx.recipe.model), p, ctx.task(), steps, resume, say=lambda m: ctx.say(f"prune: {m}"))

        try:  # an interrupted loop resumes after its last finished step ...
            loaded, summary = loop(resume=True)
        except TrainingStateError:  # ... one of other settings is stale: start over
            shutil.rmtree(steps)
            loaded, summary = loop(resume=False)
        report = summary["loop"]
        last = report["steps"][report["accepted"] - 1]
        short = {"accepted_step": report["accepted"], "params": [last["params_unpruned"], last["params"]], "flops": [last["flops_unpruned"], last["flops"]], "metrics": last["metrics"]}
    else:
        needs_task = p.granularity == "channel" and p.importance == "taylor"
        loaded, summary = prune_stage_(load_source_model(ctx.recipe.model), p, ctx.task() if needs_task else None)
        report = summary.get("channels") or summary.get("unstructured") or summary["low_rank"]
        short = {"sparsity": report["sparsity"], "note": report["note"]} if p.granularity == "unstructured" else {"params": report["params"], **({"flops": report["flops"]} if "flops" in report else {"layers": len(report["layers"])})}
    write_json_atomic(ctx.run_dir / "prune.json", summary)
    save_checkpoint(loaded, ctx.run_dir / "pruned.pt", {"prune": summary})
    return {"granularity": p.granularity, **short}


def _finetune(ctx: StageContext) -> dict:
    f = ctx.recipe.finetune
    loaded = ctx.model(before="finetune")
    teacher = load_source_model(ctx.recipe.model).model if f.distill else None
    result = finetune_stage_(loaded, ctx.task(), f, teacher, ctx.run_dir / "tuned.state.pt", say=lambda m: ctx.say(f"finetune: {m}"))
    task = ctx.task()
    meta = {"task": task.name, "primary": task.primary, **({"data": task.report()} if hasattr(task, "report") else {}), "quantize": f.quantize, "report": result.report.to_dict(), "reconstruction": result.reconstruction, "before": result.before, "metrics": result.after, "dense": result.reference, "masks_2to4": result.masks_2to4}
    write_json_atomic(ctx.run_dir / "finetune.json", meta)
    save_checkpoint(loaded, ctx.run_dir / "tuned.pt", {"finetune": meta})
    (ctx.run_dir / "tuned.state.pt").unlink(missing_ok=True)
    return {"metrics": result.after, "dense": result.reference, "steps": result.report.steps, "masks_2to4": result.masks_2to4}


def _list_contents(r: Recipe) -> dict:
    """Contents of include/exclude list files and calibration data: a change must re-run sparsify."""
    s = r.sparsify
    lists = {k: read_layer_list(path, k) for k, path in (("include", s.include_from), ("exclude", s.exclude_from)) if path}
    data = {k: data_fingerprint(v) for k, v in (("calib", s.calib), ("calib_text", s.calib_text)) if v}
    if s.needs_calibration and r.data is not None and not data:
        data["data"] = data_settings(r)
    return {**lists, **({"data": data} if data else {})}


def data_settings(r: Recipe) -> dict | None:
    """The recipe's data section and the content hash of what it reads (None without data)."""
    if r.data is None:
        return None
    return {**r.data.model_dump(mode="json", exclude={"cache"}), "content": data_fingerprint(r.data.source) or folder_fingerprint(r.data.source), "preprocess_content": source_fingerprint(r.data.preprocess) if r.data.preprocess else None}


def _export_stage(precision: str) -> Stage:
    def run(ctx: StageContext) -> dict:
        paths = {precision: ctx.run_dir / f"model.{precision}.onnx"}
        loaded = ctx.model()
        config = ctx.calibrated(ctx.recipe.export, loaded, precision == "int8")
        (result,) = export_all_(loaded, config, paths, force=True, progress=lambda p, msg: ctx.say(f"export.{msg}"))
        return {"size_bytes": result.size_bytes, "sparse_layers_verified": len(result.sparsified), "max_rel_err": result.parity.max_rel, "seconds": round(result.seconds, 2)}

    def settings(r: Recipe):
        if r.export is None or precision not in r.export.precisions:
            return None
        data = {k: data_fingerprint(v) for k, v in (("calib", r.export.calib), ("calib_text", r.export.calib_text)) if v and precision == "int8"}
        if precision == "int8" and r.data is not None and not (r.export.calib or r.export.calib_text):
            data["data"] = data_settings(r)
        return {"export": r.export.model_dump(mode="json", exclude={"precisions"}), "precision": precision, "model": None if model_file(r) else model_settings(r), **({"data": data} if data else {})}

    return Stage(
        f"export.{precision}", settings,
        lambda r: _model_inputs(r),
        lambda r: [f"model.{precision}.onnx", f"model.{precision}.report.json"],
        run,
    )


def int8_eval_settings(r: Recipe) -> dict | None:
    """What the INT8 evaluation depends on; None when the recipe exports no int8, has no task, or
    its finetune stage quantizes (QAT: the fine-tuned model is then the quantized one)."""
    if r.export is None or "int8" not in r.export.precisions or not (r.task or r.data) or (r.finetune is not None and r.finetune.quantize):
        return None
    return {"export": r.export.model_dump(mode="json", exclude={"precisions"}), "model": model_settings(r), "task": r.task, "task_args": r.task_args, "data": data_settings(r)}


def _int8_eval(ctx: StageContext) -> dict:
    """The newest model quantized as the INT8 export quantizes it (PTQ, same calibration and
    ``no_quant``), evaluated on the task against the dense model; written to ``int8.eval.json``."""
    import time


    start = time.perf_counter()
    task, loaded = ctx.task(), ctx.model()
    dense = task.evaluate(load_source_model(ctx.recipe.model).model)
    before = task.evaluate(loaded.model, dense)
    config = ctx.calibrated(ctx.recipe.export, loaded, True)
    quantized = quantize_(loaded.model, config.batches_for(loaded), "int8", disable=config.no_quant)
    result = task.evaluate(quantized, dense)
    payload = {"precision": "int8", "how": "ptq", "task": task.name, "primary": task.primary, "metrics": result.metrics, "float": before.metrics, "dense": dense.metrics, "seconds": round(time.perf_counter() - start, 2)}
    write_json_atomic(ctx.run_dir / "int8.eval.json", payload)
    return {"metrics": result.metrics}


def _report(ctx: StageContext) -> dict:
    return write_summary(ctx.recipe, ctx.run_dir)


STAGES: list[Stage] = [
    Stage(
        "prune",
        lambda r: None if r.prune is None else {"model": model_settings(r), "prune": r.prune.model_dump(mode="json"), "task": r.task, "task_args": r.task_args, "data": data_settings(r)},
        lambda r: [], lambda r: ["pruned.pt", "prune.json"], _prune,
    ),
    Stage("analyze", lambda r: {"model": None if r.prune else model_settings(r)}, lambda r: _model_inputs(r, "sparsify"), lambda r: ["analysis.json"], _analyze),
    Stage(
        "sparsify",
        lambda r: None if r.sparsify is None else {"model": None if r.prune else model_settings(r), "sparsify": r.sparsify.model_dump(mode="json"), "lists": _list_contents(r)},
        lambda r: _model_inputs(r, "sparsify"), lambda r: ["sparse.pt", "sparsify.json"], _sparsify,
    ),
    Stage(
        "finetune",
        lambda r: None if r.finetune is None else {"model": model_settings(r), "finetune": r.finetune.model_dump(mode="json"), "task": r.task, "task_args": r.task_args, "data": data_settings(r)},
        lambda r: _model_inputs(r, "finetune"), lambda r: ["tuned.pt", "finetune.json"], _finetune,
    ),
    *[_export_stage(p) for p in ("fp32", "fp16", "int8")],
    Stage("evaluate.int8", int8_eval_settings, lambda r: _model_inputs(r), lambda r: ["int8.eval.json"], _int8_eval),
    Stage(
        "report", lambda r: {"name": r.name},
        lambda r: ["analysis.json", *(["prune.json"] if r.prune else []), *(["sparsify.json"] if r.sparsify else []), *(["finetune.json"] if r.finetune else []), *[f"model.{p}.report.json" for p in (r.export.precisions if r.export else [])], *(["int8.eval.json"] if int8_eval_settings(r) else [])],
        lambda r: ["summary.json", "summary.md", *(["summary.png"] if r.finetune or int8_eval_settings(r) else [])], _report,
    ),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
