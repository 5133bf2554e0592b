"""``sparsekit run`` and ``sparsekit demo``: execute a recipe into a run folder."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import add_trust_args, emit, err, out, yes_no
from sparsekit.errors import RecipeError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="run a recipe (YAML) into a run folder, skipping unchanged stages",
        description="Execute the stages of a recipe (analyze -> sparsify -> export -> report) into a run folder with a manifest. "
        "A stage whose settings and input files did not change is skipped.",
    )
    p.add_argument("recipe", nargs="?", help="recipe YAML file (see 'sparsekit demo --show-recipe'); relative paths in it are read from its folder")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.add_argument("--report", metavar="FILE", help="also write the run summary JSON (stages, summary) to FILE (atomically)")
    add_trust_args(p)
    p.add_argument("--schema", action="store_true", help="print the recipe schema (JSON Schema, every field described) and exit")
    p.set_defaults(func=run)

    d = sub.add_parser(
        "demo", help="the main job on a built-in model, on CPU in about a minute",
        description="Run the embedded demo recipe: a small wide ResNet-style CNN -> analyze -> SparseGPT 2:4 -> ONNX fp32/fp16/int8 "
        "-> 2:4 check -> ONNX Runtime parity -> summary (summary.md, summary.json) in the run folder.",
    )
    d.add_argument("--out", metavar="DIR", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--force", action="store_true", help="re-run every stage")
    d.add_argument("--show-recipe", action="store_true", help="print the demo recipe and exit")
    d.add_argument("--json", action="store_true", help="print the run summary as JSON")
    d.set_defaults(func=run_demo)


def demo_recipe_path() -> Path:
    return Path(str(files("sparsekit") / "recipes" / "demo.yaml"))


def _execute(recipe, run_dir: Path, force: bool, as_json: bool, report: str | None = None) -> int:
    import json

    from sparsekit.recipe.runner import run_recipe

    say = (lambda msg: None) if as_json else (lambda msg: err.print(f"[dim]{msg}[/]"))
    result = run_recipe(recipe, run_dir, force, say)
    summary = json.loads((run_dir / "summary.json").read_text())
    emit(type("A", (), {"json": as_json, "report": report})(), {"run_dir": str(run_dir), "stages": [s.__dict__ for s in result.stages], "summary": summary})
    if as_json:
        return 0
    _print_summary(summary, run_dir)
    return 0


def _print_summary(s: dict, run_dir: Path) -> None:
    from sparsekit.export.parity import parity_text

    t = Table(title=f"{s['name']}: {s['model']['source']} -> 2:4 ({s['method']}) -> ONNX")
    for col in ("precision", "MB", "2:4 layers in ONNX", "check", "ORT vs PyTorch rel. err (limit)"):
        t.add_column(col)
    for p in s["precisions"]:
        e = s["exports"][p]
        if e is None:
            continue
        par = e["parity"]
        t.add_row(p, f"{e['size_bytes'] / 1e6:.2f}", str(e["sparse_verified"]), "[green]pass[/]" if e["check_passed"] else "[red]FAIL[/]", parity_text(par) + " " + ("[green]pass[/]" if par["passed"] else "[red]FAIL[/]"))
    out.print(t)
    lt = Table(title="layers")
    for col in ("layer", "weight", "FLOPs %", "TRT-eligible", "sparsify", *[f"2:4 {p}" for p in s["precisions"]]):
        lt.add_column(col, overflow="fold", min_width=8 if col != "layer" else 12)
    colours = {"sparsified": "green", "fallback": "yellow", "skipped": "red", "excluded": "dim", "dense": "dim"}
    for layer in s["layers"]:
        share = "-" if layer["flop_share"] is None else f"{100 * layer['flop_share']:.1f}"
        lt.add_row(layer["name"], "x".join(map(str, layer["shape"])), share, yes_no(layer["trt_eligible"]), f"[{colours[layer['status']]}]{layer['status']}[/]", *[yes_no(layer["onnx_2to4"].get(p)) for p in s["precisions"]])
    out.print(lt)
    fallback = sum(1 for layer in s["layers"] if layer["status"] == "fallback")
    skipped = [layer["name"] for layer in s["layers"] if layer["status"] in ("skipped", "excluded")]
    out.print(f"[bold]{s['sparsified_layers']} of {s['layers_total']}[/] layers are 2:4 on TensorRT's axis ({100 * s['sparse_flop_share']:.1f}% of FLOPs); kept dense: {', '.join(skipped) or 'none'}")
    if fallback:
        out.print(f"{fallback} layer(s) got a TensorRT-layout magnitude mask instead of SparseGPT's (see the reasons in the summary)")
    out.print(f"Amdahl bound: [bold]{s['amdahl_bound']:.2f}x[/] if all these layers ran 2x faster, [bold]{s['amdahl_bound_likely_win']:.2f}x[/] if only the wide ones likely to win do. No speed is measured on CPU.")
    out.print(f"Report: {run_dir / 'summary.md'}  (JSON: {run_dir / 'summary.json'}, artifacts and manifest in {run_dir})")


def run(args) -> int:
    import json
    import sys

    from sparsekit.recipe.schema import load_recipe, recipe_schema

    if args.schema:
        sys.stdout.write(json.dumps(recipe_schema(), indent=2) + "\n")
        return 0
    if not args.recipe:
        raise RecipeError("no recipe file given", "run 'sparsekit run RECIPE.yaml' ('sparsekit run --schema' prints the format)")
    recipe = load_recipe(args.recipe)
    return _execute(recipe, Path(args.out or Path("runs") / recipe.name), args.force, args.json, args.report)


def run_demo(args) -> int:
    from sparsekit.recipe.schema import load_recipe

    if args.show_recipe:
        out.print(demo_recipe_path().read_text(), markup=False)
        return 0
    return _execute(load_recipe(demo_recipe_path()), Path(args.out), args.force, args.json)
