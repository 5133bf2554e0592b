"""``sparsekit sensitivity``: per-layer metric cost of 2:4, and an exclude list for sparsify/recipes."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, add_task_args, emit, load_task_and_model, out, progress_bar, status
from sparsekit._io import ensure_writable_target


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sensitivity", help="sparsify one layer (or group) at a time and measure the task metric (--task or your --data); write table, plot and exclude list",
        description="For every eligible layer (or group: --groups block|kind), 2:4-sparsify only it, evaluate the task, and rank layers "
        "by the metric they cost. Writes OUT/sensitivity.json (rows and an 'exclude' list of the layers whose loss exceeds "
        "--threshold), sensitivity.md and sensitivity.png. Feed the list back with 'sparsekit sparsify --exclude-from "
        "OUT/sensitivity.json' or a recipe's sparsify.exclude_from.",
    )
    add_model_args(p, "MODEL", nargs="?")
    add_task_args(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for sensitivity.{json,md,png}")
    p.add_argument("--method", choices=("magnitude", "sparsegpt"), default="magnitude")
    p.add_argument("--groups", choices=("layer", "block", "kind"), default="layer", help="sparsify each layer alone (default), each block (path up to its first number), or each kind (same last name)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="POINTS", help="exclude the layers of groups losing more than this (metric units; default 0.5)")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN", help="only these layers (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="never these layers (repeatable)")
    p.add_argument("--force", action="store_true", help="replace existing results in OUT")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit.recover.sensitivity import layer_sensitivity, write_sensitivity

    for name in ("sensitivity.json", "sensitivity.md", "sensitivity.png"):
        ensure_writable_target(f"{args.out}/{name}", args.force)
    with status("loading the task and model"):
        task, loaded = load_task_and_model(args)
    with progress_bar("sensitivity") as bar:
        job = bar.add_task("trials", total=None, info="")
        report = layer_sensitivity(loaded.model, task, args.method, args.groups, args.include or ["*"], args.exclude, progress=lambda i, n, g: bar.update(job, total=n, completed=i, info=g))
    report.threshold = args.threshold
    paths = write_sensitivity(report, args.out)
    payload = {**report.to_dict(), "files": {k: str(v) for k, v in paths.items()}}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"2:4 sensitivity on {task.name} ({args.method}, per {args.groups}); dense {report.primary} {report.dense:.2f}")
    for col in (args.groups, "layers", report.primary, "change", "keep dense"):
        t.add_column(col)
    excluded = set(report.exclude())
    for r in report.rows:
        t.add_row(r.group, str(len(r.layers)), f"{r.metric:.2f}", f"{r.delta:+.2f}", "[red]yes[/]" if excluded & set(r.layers) else "")
    out.print(t)
    out.print(f"{len(excluded)} layers lose more than {args.threshold} points alone -> 'exclude' in {paths['json']} (use: sparsekit sparsify ... --exclude-from {paths['json']}); plot: {paths['png']}")
    return 0
