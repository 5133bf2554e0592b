"""``sparsekit prune``: coarse-grained pruning (channels, heads, FFN neurons), unstructured magnitude
pruning, or low-rank factorisation; with ``--task``, the prune -> fine-tune loop."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import add_data_args, add_model_args, add_output_args, add_task_option_arg, emit, input_options, load_task, out, progress_bar, status
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.prune.config import PruneConfig
from sparsekit._io import ensure_writable_target
from sparsekit.errors import SparsekitError


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
    add_config_args(p.add_argument_group("pruning settings (a recipe's prune: section takes the same names)"), PruneConfig)
    loop = p.add_argument_group("prune -> fine-tune loop (channel pruning with --task)")
    loop.add_argument("--task", metavar="NAME|FILE.py:FN", help="fine-tune after each step on this task ('digits', 'docstrings', or your FILE.py:make_task), distilled from the unpruned model; MODEL defaults to the task's model (with --data and no --task: your data)")
    add_task_option_arg(loop)
    loop.add_argument("--work-dir", metavar="DIR", help="where each step's checkpoint and loop.json go (default: OUTPUT + '.steps/')")
    loop.add_argument("--resume", action="store_true", help="continue after the last finished step in --work-dir")
    add_data_args(p)
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def _load(args):
    from sparsekit.models.source import load_model, parse_model_args

    task = load_task(args) if args.task else None
    if args.model is None and task is None:
        raise SparsekitError("prune needs a MODEL (or --task, whose model is then used)", "e.g. 'sparsekit prune cnn -o pruned.pt'")
    spec, model_args = (args.model, {}) if args.model else task.model
    loaded = load_model(spec, {**model_args, **parse_model_args(args.model_arg)}, **input_options(args))
    if task is None and args.source:
        task = load_task(args, loaded)
    if task is not None:
        task.check_fits(loaded.model)
    return task, loaded


def run(args) -> int:
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.recover.prune_loop import prune_stage_

    ensure_writable_target(args.output, args.force)
    config = config_from_args(args, PruneConfig)
    with status("loading the model"):
        task, loaded = _load(args)
    if config.granularity == "channel" and task is not None:
        with progress_bar("prune + fine-tune") as bar:
            job = bar.add_task("train", total=None, info="")

            def progress(info):
                bar.update(job, total=info["steps"], completed=info["step"], info=f"epoch {info['epoch']} loss {info['loss']:.4f}")

            loaded, summary = prune_stage_(loaded, config, task, Path(args.work_dir or f"{args.output}.steps"), args.resume, say=lambda m: bar.console.print(m), progress=progress)
    else:
        with status(f"pruning ({config.granularity})"):
            loaded, summary = prune_stage_(loaded, config, task)
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
