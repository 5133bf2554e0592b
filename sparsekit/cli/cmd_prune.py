"""``sparsekit prune``: coarse-grained pruning (channels, heads, FFN neurons), unstructured magnitude
pruning, or low-rank factorisation; with ``--task``, the prune -> fine-tune loop."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, add_task_option_arg, emit, input_options, out, progress_bar, status, task_options
from sparsekit.prune.apply import GRANULARITIES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help="remove channels / heads / FFN neurons (a smaller dense model), or prune unstructured, or factorise to low rank",
        description="channel (default): remove the least important output channels of every Linear/Conv layer together with everything "
        "coupled to them (residual adds, concatenations, grouped convs, BatchNorm; whole attention heads and FFN neurons in transformers, "
        "whose residual stream keeps its width), widths rounded to --round-to; dependencies from Torch-Pruning. The result is a smaller "
        "dense model that runs faster on any GPU; 2:4 and INT8 stack on top (sparsify, finetune --quantize). With --task, each step of "
        "--schedule is followed by fine-tuning distilled from the unpruned model, and the loop stops when the task metric drops more than "
        "--max-drop points (resumable with --resume). unstructured: zero the smallest weights (no GPU speedup; a comparison). "
        "low-rank: replace Linear layers by two thinner ones from a truncated SVD. Run on a dense model, before sparsify.",
    )
    add_model_args(p, "MODEL", nargs="?")
    p.add_argument("-o", "--output", required=True, metavar="CKPT.pt", help="checkpoint to write (rebuilds the pruned architecture on load)")
    p.add_argument("--granularity", choices=GRANULARITIES, default="channel", help="what to remove (default: channel)")
    g = p.add_argument_group("channel pruning")
    g.add_argument("--ratio", type=float, default=0.25, metavar="R", help="share of each layer's output channels to remove, 0..1 (default 0.25)")
    g.add_argument("--importance", choices=("l1", "l2", "bn", "taylor"), default="l1", help="channel ranking: l1/l2 filter norm, bn = BatchNorm |gamma| (network slimming: train with 'finetune --bn-l1' first), taylor = |w * dL/dw| (needs --task with labels); default l1")
    g.add_argument("--round-to", type=int, default=16, metavar="N", help="keep widths (and low-rank ranks) at multiples of N (default 16: ModelOpt 2:4-sparsifies only layers whose input channels are a multiple of 16, and INT8 Tensor Cores want 16; 8 suffices for fp16 alone; 1 = exact ratio)")
    g.add_argument("--layer-ratio", action="append", default=[], metavar="PATTERN=R", help="ratio for layers matching the fnmatch PATTERN instead of --ratio (repeatable)")
    g.add_argument("--head-ratio", type=float, metavar="R", help="share of attention heads to remove per block (default: --ratio)")
    g.add_argument("--global", dest="global_ranking", action="store_true", help="rank channels across layers (widths then differ per layer)")
    g.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="layers that keep their width (channel) or are left alone (unstructured, low-rank); repeatable")
    loop = p.add_argument_group("prune -> fine-tune loop (with --task)")
    loop.add_argument("--task", metavar="NAME", help="fine-tune after each step on this task ('digits', 'docstrings'), distilled from the unpruned model; MODEL defaults to the task's model")
    loop.add_argument("--data", metavar="PATH", help="task data file where the task has one")
    add_task_option_arg(loop)
    loop.add_argument("--schedule", metavar="R1,R2,...", help="cumulative shares of the original channels removed after each step, e.g. 0.25,0.5 (default: one step to --ratio)")
    loop.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS", help="stop when the task metric falls more than this below the unpruned model (default 1)")
    loop.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per step (default 2)")
    loop.add_argument("--lr", type=float, default=1e-3, help="fine-tuning peak learning rate (default 1e-3)")
    loop.add_argument("--batch-size", type=int, default=32)
    loop.add_argument("--student-loss-weight", type=float, default=0.5, metavar="W", help="share of the task's own loss next to distillation (default 0.5; label-free tasks use 0)")
    loop.add_argument("--work-dir", metavar="DIR", help="where each step's checkpoint and loop.json go (default: OUTPUT + '.steps/')")
    loop.add_argument("--resume", action="store_true", help="continue after the last finished step in --work-dir")
    u = p.add_argument_group("unstructured")
    u.add_argument("--amount", type=float, default=0.5, metavar="S", help="share of weights to zero (default 0.5)")
    u.add_argument("--threshold", type=float, metavar="T", help="zero every weight with |w| < T instead")
    u.add_argument("--scope", choices=("layer", "global"), default="layer", help="amount per layer or one cut across layers (default layer)")
    lr = p.add_argument_group("low-rank")
    lr.add_argument("--rank-fraction", type=float, default=0.5, metavar="F", help="rank as a share of min(in, out) (default 0.5)")
    lr.add_argument("--include", action="append", default=[], metavar="PATTERN", help="Linear layers to factorise (repeatable; default all)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def _layer_ratios(items: list[str]) -> dict[str, float]:
    from sparsekit.errors import SparsekitError

    ratios = {}
    for item in items:
        pattern, sep, value = item.rpartition("=")
        try:
            ratios[pattern] = float(value)
        except ValueError:
            pattern = ""
        if not sep or not pattern:
            raise SparsekitError(f"--layer-ratio '{item}' is not PATTERN=R", "e.g. --layer-ratio 'stages.2.*=0.5'")
    return ratios


def _schedule(text: str | None, ratio: float) -> list[float]:
    from sparsekit.errors import SparsekitError

    if not text:
        return [ratio]
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SparsekitError(f"--schedule '{text}' is not a comma-separated list of shares", "e.g. --schedule 0.25,0.5") from exc


def _load(args):
    from sparsekit.models.source import load_model, parse_model_args
    from sparsekit.errors import SparsekitError
    from sparsekit.tasks import get_task

    task = get_task(args.task, **task_options(args)) if args.task else None
    if args.model is None and task is None:
        raise SparsekitError("prune needs a MODEL (or --task, whose model is then used)", "e.g. 'sparsekit prune cnn -o pruned.pt'")
    spec, model_args = (args.model, {}) if args.model else task.model
    loaded = load_model(spec, {**model_args, **parse_model_args(args.model_arg)}, **input_options(args))
    if task is not None:
        task.check_fits(loaded.model)
    return task, loaded


def run(args) -> int:
    from pydantic import ValidationError

    from sparsekit._io import ensure_writable_target
    from sparsekit.errors import SparsekitError
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.prune.apply import prune_

    ensure_writable_target(args.output, args.force)
    with status("loading the model"):
        task, loaded = _load(args)
    settings = dict(ratio=args.ratio, importance=args.importance, round_to=args.round_to, layer_ratios=_layer_ratios(args.layer_ratio), head_ratio=args.head_ratio,
                    global_ranking=args.global_ranking, include=args.include or ["*"], exclude=args.exclude, amount=args.amount, threshold=args.threshold,
                    scope=args.scope, rank_fraction=args.rank_fraction, batch_size=args.batch_size)
    if args.granularity == "channel" and task is not None:
        from sparsekit.prune.loop import ChannelSettings, LoopConfig
        from sparsekit.recover.finetune import FineTuneConfig

        try:
            config = LoopConfig(
                schedule=_schedule(args.schedule, args.ratio), max_drop=args.max_drop, batch_size=args.batch_size, student_loss_weight=args.student_loss_weight,
                channels=ChannelSettings(importance=args.importance, round_to=args.round_to, exclude=args.exclude, global_ranking=args.global_ranking, head_share=args.head_ratio),
                finetune=FineTuneConfig(epochs=args.epochs, lr=args.lr),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SparsekitError(f"invalid loop setting {'.'.join(map(str, err['loc']))}: {err['msg']}", "see 'sparsekit prune --help'") from exc
        with progress_bar("prune + fine-tune") as bar:
            job = bar.add_task("train", total=None, info="")

            def progress(info):
                bar.update(job, total=info["steps"], completed=info["step"], info=f"epoch {info['epoch']} loss {info['loss']:.4f}")

            loaded, summary = prune_(loaded, "channel", task=task, loop=config, work_dir=Path(args.work_dir or f"{args.output}.steps"), resume=args.resume,
                                     say=lambda m: bar.console.print(m), progress=progress, **settings)
    else:
        with status(f"pruning ({args.granularity})"):
            loaded, summary = prune_(loaded, args.granularity, **settings)
    meta = {"prune": summary}
    save_checkpoint(loaded, args.output, meta)
    payload = {**meta["prune"], "checkpoint": str(args.output)}
    emit(args, payload)
    if not args.json:
        _print(meta["prune"], args.output)
    return 0


def _print(result: dict, output: str) -> None:
    if "loop" in result:
        loop = result["loop"]
        t = Table(title=f"prune -> fine-tune on {loop['task']} ({loop['metric']}, unpruned {loop['unpruned'][loop['metric']]:.2f}; stop past -{loop['max_drop']} points)")
        for col in ("step", "channels removed", "params", "FLOPs", "one-shot", "fine-tuned", "drop", "s"):
            t.add_column(col)
        for s in loop["steps"]:
            colour = "green" if s["within"] else "red"
            t.add_row(str(s["step"]), f"{s['target']:.0%}", f"{s['params']:,} ({s['params'] / s['params_unpruned']:.0%})", f"{s['flops'] / s['flops_unpruned']:.0%}", f"{s['one_shot'][loop['metric']]:.2f}", f"{s['metrics'][loop['metric']]:.2f}", f"[{colour}]{-s['drop']:+.2f}[/]", f"{s['seconds']:.0f}")
        out.print(t)
        out.print(f"kept step {loop['accepted']}" + (f"; stopped: {loop['stopped']}" if loop["stopped"] else "") + f"; checkpoint: {output}")
    elif "channels" in result:
        r = result["channels"]
        t = Table(title=f"channel pruning ({r['importance']}, ratio {r['ratio']}, widths multiple of {r['round_to']})")
        for col in ("layer", "width before", "width after"):
            t.add_column(col)
        for name, (before, after) in r["layers"].items():
            t.add_row(name, str(before), str(after))
        out.print(t)
        for name, (before, after) in r["heads"].items():
            out.print(f"{name}: {before} -> {after} attention heads")
        out.print(f"parameters {r['params'][0]:,} -> {r['params'][1]:,} ({r['params'][1] / r['params'][0]:.0%}); FLOPs per sample {r['flops'][0]:,} -> {r['flops'][1]:,} ({r['flops'][1] / r['flops'][0]:.0%}); {len(r['fixed'])} layer(s) kept their width; checkpoint: {output}")
    elif "unstructured" in result:
        r = result["unstructured"]
        out.print(f"{r['sparsity']:.1%} of the weights of {len(r['layers'])} layers are zero; checkpoint: {output}")
        out.print(f"[yellow]{r['note']}[/]")
    else:
        r = result["low_rank"]
        t = Table(title=f"low-rank factorisation (rank fraction {r['rank_fraction']})")
        for col in ("layer", "weight", "rank", "energy kept"):
            t.add_column(col)
        for name, x in r["layers"].items():
            t.add_row(name, "x".join(map(str, x["shape"])), str(x["rank"]), f"{x['energy']:.3f}")
        out.print(t)
        for name, why in r["skipped"].items():
            out.print(f"[dim]{name}: left as it is ({why})[/]")
        out.print(f"parameters {r['params'][0]:,} -> {r['params'][1]:,}; checkpoint: {output}")
