"""Run a recipe: execute its stages in order into a run folder, skip what did not change,
and keep a manifest of what ran, with hashes of every artifact."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sparsekit._hashing import file_sha256, kit_version
from sparsekit._io import write_json_atomic
from sparsekit.errors import OutputPathError
from sparsekit.recipe.schema import Recipe
from sparsekit.models.trust import trust_sources
from sparsekit.recipe.stages import STAGES, StageContext

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
KEY_SCHEMA = 1


def stage_key(name: str, settings: dict, input_hashes: dict[str, str]) -> str:
    """Content key of a stage run: its settings, its input files' hashes, the kit version."""
    blob = json.dumps({"stage": name, "settings": settings, "inputs": input_hashes, "kit": kit_version(), "schema": KEY_SCHEMA}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    summary: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """What :func:`run_recipe` did."""

    run_dir: Path
    stages: list[StageResult]

    @property
    def summary_md(self) -> Path:
        return self.run_dir / "summary.md"


def _load_manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"stages": {}}


def run_recipe(recipe: Recipe, run_dir: str | os.PathLike, force: bool = False, say: Callable[[str], None] = lambda msg: None) -> RunResult:
    """Execute every enabled stage of ``recipe`` into ``run_dir``.

    A stage is skipped when the manifest holds the same key (settings + input-file hashes + kit
    version) and all its outputs still exist with the recorded hashes. ``force`` re-runs all.
    The manifest is rewritten (atomically) after every stage, so an interrupted run resumes.

    Args:
        recipe: the validated recipe.
        run_dir: the run folder (created).
        force: ignore the manifest.
        say: progress callback, called with one line per stage.
    """
    run = Path(run_dir)
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create run folder '{run}': {exc.strerror}", "choose a writable --out folder") from exc
    manifest = _load_manifest(run)
    manifest.update({"recipe": recipe.model_dump(mode="json"), "kit_version": kit_version()})
    ctx = StageContext(recipe, run, say)
    code = [recipe.task if recipe.task and ":" in recipe.task else None, recipe.data.preprocess if recipe.data else None]  # named by the recipe you run
    with trust_sources(recipe.model.source, *code, remote_code=recipe.model.trust_remote_code or None, max_params=recipe.model.max_params):
        results = _run_stages(ctx, manifest, force)
    write_json_atomic(run / MANIFEST, manifest)
    return RunResult(run, results)


def _run_stages(ctx: StageContext, manifest: dict, force: bool) -> list[StageResult]:
    """Run or skip each enabled stage in order, rewriting the manifest after every one that ran."""
    recipe, run, say = ctx.recipe, ctx.run_dir, ctx.say
    results = []
    for stage in STAGES:
        settings = stage.settings(recipe)
        if settings is None:
            continue
        inputs = {name: file_sha256(run / name) for name in stage.inputs(recipe)}
        key = stage_key(stage.name, settings, inputs)
        prev = manifest["stages"].get(stage.name, {})
        outputs = stage.outputs(recipe)
        fresh = prev.get("key") == key and all((run / o).is_file() and prev.get("outputs", {}).get(o) == file_sha256(run / o) for o in outputs)
        if fresh and not force:
            say(f"{stage.name}: unchanged, skipped")
            results.append(StageResult(stage.name, "skipped", 0.0, prev.get("summary", {})))
            continue
        say(f"{stage.name}: running")
        start = time.perf_counter()
        summary = stage.run(ctx)
        seconds = time.perf_counter() - start
        manifest["stages"][stage.name] = {"key": key, "settings": settings, "inputs": inputs, "outputs": {o: file_sha256(run / o) for o in outputs}, "seconds": round(seconds, 3), "summary": summary, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(run / MANIFEST, manifest)
        results.append(StageResult(stage.name, "ran", seconds, summary))
        say(f"{stage.name}: done in {seconds:.1f} s")
    return results
