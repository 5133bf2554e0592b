"""``sparsekit plan``: which layers go 2:4, by accuracy cost and expected speed together."""

from __future__ import annotations

from rich.table import Table

from sparsekit._io import ensure_writable_target
from sparsekit.cli.common import add_model_args, add_output_args, add_task_args, emit, is_task_code, load_task_and_model, out, progress_bar, status, task_options
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.errors import SparsekitError
from sparsekit.plan.config import PlanConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan", help="choose which layers go 2:4 by accuracy and speed together: a frontier of (metric, expected speedup) and the include list of the best point",
        description="Measures what 2:4 costs each layer on your task (--task, or your --data) and what it saves (each GEMM's 2:4/dense ratio from "
        "--speed, a GPU suite result or 'sparsekit select' file, else the ideal 2x; FLOP shares at --batch), orders the layers by metric lost per "
        "unit of time saved, evaluates plans along that order one-shot, distils a few frontier points from the dense model, and writes "
        "OUT/plan.json (every point, and the 'include' list of the fastest point within --max-drop), plan.md and plan.png. Feed the list to "
        "'sparsekit sparsify --include-from OUT/plan.json' or a recipe's sparsify.include_from.",
    )
    add_model_args(p, "MODEL", nargs="?")
    add_task_args(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for plan.{json,md,png}")
    p.add_argument("--speed", metavar="TABLE.json", help="measured GEMM ratios: a GPU suite result (benchmarks/results/<gpu>/gpu_suite.json) or a 'sparsekit select' output (default: the ideal 2x)")
    p.add_argument("--split", action="append", default=[], metavar="NAME", help="also evaluate every frontier point on this split of a registered task (repeatable), e.g. docstrings: heldout, ood")
    add_config_args(p.add_argument_group("plan settings"), PlanConfig)
    p.add_argument("--force", action="store_true", help="replace existing results in OUT")
    add_output_args(p)
    p.set_defaults(func=run)


def _extra_tasks(args, task) -> dict:
    from sparsekit.tasks import get_task

    if not args.split:
        return {}
    if not args.task or is_task_code(args.task):
        raise SparsekitError("--split needs a registered --task with evaluation splits", "drop --split, or use e.g. --task docstrings --split heldout")
    return {split: get_task(task.name, **{**task_options(args), "eval_split": split}) for split in args.split}


def run(args) -> int:
    from sparsekit.plan.planner import plan_sparsity
    from sparsekit.plan.report import FILES, write_plan
    from sparsekit.plan.speed_table import load_speed_table

    for name in FILES:
        ensure_writable_target(f"{args.out}/{name}", args.force)
    config = config_from_args(args, PlanConfig)
    speed = load_speed_table(args.speed) if args.speed else None
    if speed is not None:
        speed.check_dtype(config.dtype)  # before the model is loaded
    with status("loading the task and model"):
        task, loaded = load_task_and_model(args)
        extra = _extra_tasks(args, task)
    with progress_bar("plan") as bar:
        job = bar.add_task("evaluating", total=None, info="")
        report = plan_sparsity(loaded, task, config, speed, extra, progress=lambda m: bar.update(job, info=m))
    plan = report.to_dict()
    paths = write_plan(plan, args.out)
    emit(args, {**plan, "files": {k: str(v) for k, v in paths.items()}})
    if args.json:
        return 0
    primary = report.primary
    t = Table(title=f"2:4 plan on {task.name}: dense {primary} {report.dense[primary]:.2f}; speed from {'the ideal 2x' if report.speed_source == 'ideal' else report.speed_source}")
    for col in ("#", "2:4 layers", "expected speedup", "ideal bound", primary, "vs dense [95% CI]", "recovered", "frontier"):
        t.add_column(col)
    for i, p in enumerate(report.points):
        d = p.diff
        recovered = "; ".join(f"{name} {r['metrics'][primary]:.2f} ({r['diff']['diff']:+.2f})" for name, r in (("reconstructed", p.reconstructed), ("distilled", p.distilled)) if r)
        t.add_row(str(i), str(len(p.sparse)), f"{p.speedup:.3f}x", f"{p.speedup_ideal:.3f}x", f"{p.metrics[primary]:.2f}", f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" if d else "",
                  recovered, ("[bold]chosen[/] " if i == report.chosen else "") + ("yes" if p.frontier else ""))
    out.print(t)
    c = report.points[report.chosen]
    out.print(f"chosen: {len(c.sparse)} layers 2:4, expected {c.speedup:.2f}x, {primary} {-c.loss:+.2f} vs dense ({c.best}) -> 'include' in {paths['json']} (use: sparsekit sparsify ... --include-from {paths['json']}); table {paths['md']}; plot {paths['png']}")
    for note in report.notes:
        out.print(f"note: {note}")
    return 0
