"""``sparsekit select``: measure each eligible layer dense vs 2:4 on this GPU; write an include list."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import add_model_args, emit, err, out, load_from_args
from sparsekit._io import ensure_writable_target


def add_parser(sub) -> None:
    p = sub.add_parser(
        "select", help="pick the layers to sparsify by measured speed on this GPU (writes an include list)",
        description="For every sparsifiable layer, time its GEMM dense and 2:4 (PyTorch semi-structured kernels; a k x k conv as its implicit "
        "GEMM) at the given batch, in paired rounds. A layer is included when the lower bound of its speedup interval reaches --margin. "
        "Feed the result to 'sparsekit sparsify --include-from' or a recipe's sparsify.include_from. Needs an Ampere+ GPU.",
    )
    add_model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.json", help="selection file to write")
    p.add_argument("--batch", type=int, default=8, help="deployment batch size (default 8)")
    p.add_argument("--margin", type=float, default=1.05, help="minimum speedup to sparsify a layer (default 1.05)")
    p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    p.add_argument("--rounds", type=int, default=6, help="paired rounds per layer (default 6)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print the selection JSON on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit.bench.harness import BenchConfig
    from sparsekit.bench.select import select_layers_by_speed, write_selection

    ensure_writable_target(args.output, args.force)
    loaded = load_from_args(args)
    config = BenchConfig(rounds=args.rounds, round_seconds=0.05, min_iters=20, warmup_seconds=0.1)
    selection = select_layers_by_speed(loaded, args.batch, config, args.margin, args.dtype, (lambda m: None) if args.json else (lambda m: err.print(f"[dim]{m}[/]")))
    write_selection(selection, args.output)
    if args.json:
        emit(args, selection)
        return 0
    t = Table(title=f"speed-aware selection at batch {args.batch} ({args.dtype}), margin {args.margin}")
    for col in ("layer", "GEMM MxKxN", "dense ms", "2:4 ms", "speedup (CI)", "decision"):
        t.add_column(col)
    for row in selection["measurements"]:
        sp = row.get("speedup")
        t.add_row(row["name"], f"{row['m']}x{row['k']}x{row['n']}", f"{row.get('dense_ms', 0):.4f}", f"{row.get('sparse_ms', 0):.4f}", f"{sp['ratio']:.2f} ({sp['low']:.2f}-{sp['high']:.2f})" if sp else row.get("reason", "-"), row["decision"])
    out.print(t)
    out.print(f"include {len(selection['include'])}, exclude {len(selection['exclude'])}: {args.output}")
    return 0
