"""``sparsekit finetune``: recover accuracy with the 2:4 masks fixed (optionally distilled, optionally QAT)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, add_task_args, emit, load_task_and_model, out, progress_bar, status


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a (2:4) model on a known task with its masks fixed; distillation and INT8/FP8 QAT optional",
        description="Train MODEL on --task with every 2:4 mask enforced after each optimizer step (pruned weights and their optimizer "
        "state stay zero). With --teacher the dense model is distilled into it through ModelOpt (logit KD, or cosine for embeddings; "
        "--features adds per-layer feature losses). With --quantize the model is INT8/FP8-quantized first (sparsify -> quantize -> train: "
        "the order that keeps 2:4 into the ONNX) and the training is QAT. The training state is saved each epoch next to the output; "
        "--resume continues an interrupted run. A NaN/inf loss stops the run and keeps the last good state. "
        "Without MODEL the task's own model is trained (dense), e.g. to make the teacher.",
    )
    add_model_args(p, "MODEL", nargs="?")
    add_task_args(p)
    p.add_argument("-o", "--output", required=True, metavar="CKPT.pt", help="checkpoint to write (sparsity and quantization state included)")
    p.add_argument("--teacher", metavar="MODEL", help="dense teacher to distil from: checkpoint or zoo name (required for label-free tasks such as docstrings)")
    p.add_argument("--features", action="store_true", help="distillation also matches the task's feature layers (e.g. each encoder layer's output)")
    p.add_argument("--student-loss-weight", type=float, default=0.0, metavar="W", help="share of the task's own loss next to distillation (0..1, default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="logit-KD temperature (default 1)")
    p.add_argument("--quantize", choices=("int8", "fp8"), help="quantize first, then train (QAT)")
    p.add_argument("--calib-method", choices=("max", "entropy", "percentile", "mse"), default="max", help="activation calibration of --quantize (default max; fp8 takes max or percentile)")
    p.add_argument("--no-quant", action="append", default=[], metavar="PATTERN", help="keep layers matching PATTERN unquantized (repeatable)")
    p.add_argument("--calib-samples", type=int, default=256, metavar="N", help="calibration samples of --quantize (default 256)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (warm-up, then cosine decay; default 5e-5)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.06, help="share of steps warming up (default 0.06)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 = off (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, metavar="STEPS", help="also save the training state every STEPS steps (default: each epoch)")
    p.add_argument("--masks", choices=("fixed", "learned"), default="fixed", help="fixed: the 2:4 masks of sparsify stay (default); learned: SR-STE, masks recomputed from the dense weights every step (TensorRT layout), weights may move between kept and pruned, masks frozen and checked at the end")
    p.add_argument("--mask-decay", type=float, default=2e-4, metavar="LAMBDA", help="SR-STE decay of the pruned weights with --masks learned (default 2e-4)")
    p.add_argument("--bn-l1", type=float, default=0.0, metavar="LAMBDA", help="network slimming: L1 penalty on every BatchNorm scale so that unimportant channels go to zero (e.g. 1e-4); then 'sparsekit prune --importance bn' removes them")
    p.add_argument("--keep-zeros", action="store_true", help="weights that are exactly zero at the start stay zero (after 'sparsekit prune --granularity unstructured')")
    p.add_argument("--eval-each-epoch", action="store_true", help="evaluate on the task's held-out data after every epoch (shown in the progress bar, kept in the checkpoint's metadata)")
    p.add_argument("--resume", action="store_true", help="continue from the training state next to --output (same model and settings)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def state_path(output: str) -> Path:
    """The resumable training state kept next to the output checkpoint."""
    return Path(f"{output}.state.pt")


def run(args) -> int:
    from pydantic import ValidationError

    from sparsekit._io import ensure_writable_target
    from sparsekit.errors import SparsekitError
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model
    from sparsekit.recover.finetune import FineTuneConfig
    from sparsekit.recover.masks import masked_parameters
    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
    from sparsekit.sparsify.check import check_model

    ensure_writable_target(args.output, args.force)
    try:
        config = FineTuneConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer, warmup=args.warmup, grad_clip=args.grad_clip, seed=args.seed, save_every=args.save_every, bn_l1=args.bn_l1, keep_zeros=args.keep_zeros, masks=args.masks, mask_decay=args.mask_decay)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SparsekitError(f"invalid training setting {'.'.join(map(str, err['loc']))}: {err['msg']}", "see 'sparsekit finetune --help'") from exc
    if args.batch_size < 1:
        raise SparsekitError(f"--batch-size must be at least 1, got {args.batch_size}", "give a positive batch size")
    state = state_path(args.output)
    if state.exists() and not args.resume:
        state.unlink()
    with status("loading the task and model"):
        task, loaded = load_task_and_model(args)
        teacher = load_model(args.teacher).model if args.teacher else None
        reference = task.evaluate(teacher) if teacher is not None else None
        before = task.evaluate(loaded.model, reference)
    if args.quantize:
        from sparsekit.quantize.ptq import quantize_

        with status(f"{args.quantize} calibration ({args.calib_method})"):
            loaded.model = quantize_(loaded.model, task.calibration(args.calib_samples), args.quantize, args.no_quant, args.calib_method)
    distill = DistillConfig(features=args.features, temperature=args.temperature, student_loss_weight=args.student_loss_weight)
    with progress_bar("fine-tune") as bar:
        job = bar.add_task("train", total=None, info="")

        def progress(info):
            shown = "".join(f" {k} {v:.3f}" for k, v in info.get("metrics", {}).items())
            bar.update(job, total=info["steps"], completed=info["step"], info=f"epoch {info['epoch']} loss {info['loss']:.4f}{shown}")

        loaded.model, report = finetune_on_task_(loaded.model, task, config, args.batch_size, teacher, distill, state, progress, args.eval_each_epoch, reference)
    with status("evaluating"):
        after = task.evaluate(loaded.model, reference)
    meta = {"finetune": {"task": task.name, "config": config.model_dump(), "distilled": teacher is not None, "quantize": args.quantize, "report": report.to_dict(), "before": before.metrics, "after": after.metrics}}
    save_checkpoint(loaded, args.output, meta)
    if state.exists():
        state.unlink()
    masks_ok = check_model(loaded.model).passed
    payload = {**meta["finetune"], "checkpoint": str(args.output), "masked_layers": sum(1 for _ in masked_parameters(loaded.model)), "masks_2to4": masks_ok}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"{task.name}: {loaded.name} fine-tuned ({report.steps} steps, {report.seconds:.0f} s" + (f", resumed at step {report.resumed_from_step}" if report.resumed_from_step else "") + ")")
    for col in ("metric", "before", "after"):
        t.add_column(col)
    for k, v in after.metrics.items():
        t.add_row(k, f"{before.metrics[k]:.3f}" if k in before.metrics else "-", f"{v:.3f}")
    out.print(t)
    out.print(f"epoch losses: {', '.join(f'{x:.4f}' for x in report.epoch_loss)}; {payload['masked_layers']} layers kept 2:4 ({'verified' if masks_ok else 'NOT 2:4'}); checkpoint: {args.output}")
    return 0
