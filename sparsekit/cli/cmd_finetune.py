"""``sparsekit finetune``: recover accuracy with the 2:4 masks fixed (optionally distilled, optionally QAT)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.recover.config import FinetuneConfig
from sparsekit.cli.common import add_model_args, add_output_args, add_task_args, emit, err, load_task_and_model, out, progress_bar, status
from sparsekit._io import ensure_writable_target


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a (2:4) model on your data (--data) or a known task with its masks fixed; distillation and INT8/FP8 QAT optional",
        description="Train MODEL on --data (your data: distilled from the dense model, label-free unless it has labels) or --task with every 2:4 mask enforced after each optimizer step (pruned weights and their optimizer "
        "state stay zero). With --teacher the dense model is distilled into it through ModelOpt (logit KD, or cosine for embeddings; "
        "--features adds per-layer feature losses). With --quantize the model is INT8/FP8-quantized first (sparsify -> quantize -> train: "
        "the order that keeps 2:4 into the ONNX) and the training is QAT. The training state is saved each epoch next to the output; "
        "--resume continues an interrupted run. A NaN/inf loss stops the run and keeps the last good state. "
        "Without MODEL the task's own model is trained (dense), e.g. to make the teacher.",
    )
    add_model_args(p, "MODEL", nargs="?")
    add_task_args(p)
    p.add_argument("-o", "--output", required=True, metavar="CKPT.pt", help="checkpoint to write (sparsity and quantization state included)")
    p.add_argument("--teacher", metavar="MODEL", help="dense teacher to distil from: a checkpoint, zoo name, hf:DIR or FILE.py:factory (required for label-free tasks such as docstrings; with --data, default: the hf:DIR folder a checkpoint was made from, when it still holds the same config; zoo and factory checkpoints have none)")
    add_config_args(p.add_argument_group("fine-tuning settings (a recipe's finetune: section takes the same names)"), FinetuneConfig)
    p.add_argument("--resume", action="store_true", help="continue from the training state next to --output (same model and settings)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def state_path(output: str) -> Path:
    """The resumable training state kept next to the output checkpoint."""
    return Path(f"{output}.state.pt")


def run(args) -> int:
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model
    from sparsekit.recover.masks import masked_parameters
    from sparsekit.recover.task_finetune import finetune_stage_
    from sparsekit.tasks.dense_teacher import DefaultTeacher, default_teacher

    ensure_writable_target(args.output, args.force)
    config = config_from_args(args, FinetuneConfig)
    state = state_path(args.output)
    if state.exists() and not args.resume:
        state.unlink()
    with status("loading the task and model"):
        task, loaded = load_task_and_model(args)
        chosen = DefaultTeacher(load_model(args.teacher).model, args.teacher) if args.teacher else default_teacher(task, loaded)
    teacher = chosen.model
    if teacher is not None and not args.teacher:
        err.print(f"teacher: {chosen.description}; name another with --teacher", markup=False, highlight=False, soft_wrap=True)
    with progress_bar("fine-tune") as bar:
        job = bar.add_task("train", total=None, info="")

        def progress(info):
            shown = "".join(f" {k} {v:.3f}" for k, v in info.get("metrics", {}).items())
            bar.update(job, total=info["steps"], completed=info["step"], info=f"epoch {info['epoch']} loss {info['loss']:.4f}{shown}")

        result = finetune_stage_(loaded, task, config, teacher, state, progress, say=lambda m: bar.console.print(m))
    report = result.report
    meta = {"finetune": {"task": task.name, "config": config.model_dump(), "distilled": teacher is not None, "teacher": chosen.description, "quantize": config.quantize, "report": report.to_dict(), "before": result.before, "after": result.after, "dense": result.reference, "reconstruction": result.reconstruction, **({"data": task.report()} if hasattr(task, "report") else {})}}
    save_checkpoint(loaded, args.output, meta)
    if state.exists():
        state.unlink()
    payload = {**meta["finetune"], "checkpoint": str(args.output), "masked_layers": sum(1 for _ in masked_parameters(loaded.model)), "masks_2to4": result.masks_2to4}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"{task.name}: {loaded.name} fine-tuned ({report.steps} steps, {report.seconds:.0f} s" + (f", resumed at step {report.resumed_from_step}" if report.resumed_from_step else "") + ")")
    for col in ("metric", "before", "after"):
        t.add_column(col)
    for k in result.after:
        if not k.endswith(("_low", "_high")):
            t.add_row(k, _shown(result.before, k), _shown(result.after, k))
    out.print(t)
    out.print(f"epoch losses: {', '.join(f'{x:.4f}' for x in report.epoch_loss)}; {payload['masked_layers']} layers kept 2:4 ({'verified' if result.masks_2to4 else 'NOT 2:4'}); checkpoint: {args.output}")
    return 0


def _shown(metrics: dict, name: str) -> str:
    """``value [low, high]`` of a metric (its 95% interval where the task gives one), or ``-``."""
    if name not in metrics:
        return "-"
    low, high = metrics.get(f"{name}_low"), metrics.get(f"{name}_high")
    return f"{metrics[name]:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")
