"""``sparsekit sparsify``: 2:4 through ModelOpt, masks in TensorRT's layout, saved as a checkpoint."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, emit, load_from_args, out, status


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sparsify", help="2:4-sparsify a model through ModelOpt and save a checkpoint",
        description="Apply 2:4 sparsity with ModelOpt ('magnitude' or calibrated 'sparsegpt') to the Linear/Conv2d layers that match "
        "--include and no --exclude. Every mask is verified on TensorRT's axis. ModelOpt's SparseGPT groups a k x k conv's weights along "
        "C*R*S, which TensorRT cannot use: the kit runs SparseGPT on those convs itself with the columns ordered (r, s, c), so that "
        "each group of 4 is 4 input channels (TensorRT's layout); grouped convs get a TensorRT-layout magnitude mask ('fallback', with the reason).",
    )
    add_model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="CKPT.pt", help="checkpoint to write (restores with its sparsity state)")
    p.add_argument("--method", choices=("magnitude", "sparsegpt"), default="magnitude", help="sparsity method (default: magnitude)")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN", help="fnmatch pattern of layer names to sparsify (repeatable; default: all)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="fnmatch pattern of layer names to keep dense (repeatable), e.g. '*head*'")
    p.add_argument("--include-from", metavar="FILE", help="layers to sparsify from a file: the JSON of 'sparsekit select' (its include list) or one name/pattern per line")
    p.add_argument("--exclude-from", metavar="FILE", help="layers to keep dense from a file: a JSON with an 'exclude' list (e.g. from sensitivity analysis) or one name/pattern per line")
    p.add_argument("--calib", metavar="DATA", help="calibration data for sparsegpt: .pt/.npy/.npz with [N, ...] samples, or module:function; default: random inputs")
    p.add_argument("--calib-text", metavar="FILE", help="calibrate on real text, one sample per line, tokenized by the tokenizer of the hf:DIR model folder (padded/truncated to --seq-len)")
    p.add_argument("--calib-samples", type=int, default=64, metavar="N", help="random calibration samples when --calib is not given, or lines of --calib-text used (default 64)")
    p.add_argument("--permute", action="store_true", help="first search channel permutations (producer outputs + consumer inputs reordered together: "
                   "the dense function is unchanged) so that 2:4 keeps more weight magnitude; reported per layer")
    p.add_argument("--permute-sweeps", type=int, default=100, metavar="N", help="permutation search sweeps per layer (default 100; more keeps a little more, slower)")
    p.add_argument("--untie-tied", action="store_true", help="also sparsify layers whose weight is tied to another parameter (a language model's head and its "
                   "token embedding): each gets its own 2:4 copy, which adds its size (stated in the report); by default they stay dense")
    p.add_argument("--conv-masks", choices=("sparsegpt", "magnitude"), default="sparsegpt", help="with --method sparsegpt, how k x k convs get their masks: TensorRT-layout SparseGPT (default) or TensorRT-layout magnitude (for comparison)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit._io import ensure_writable_target
    from sparsekit.models.calib import calibration_for
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.sparsify.sparsify import sparsify_

    from sparsekit.sparsify.layer_lists import resolve_layer_patterns

    ensure_writable_target(args.output, args.force)
    include, exclude = resolve_layer_patterns(args.include, args.exclude, args.include_from, args.exclude_from)
    loaded = load_from_args(args)
    needs = args.method == "sparsegpt" or args.calib or args.calib_text
    calib = calibration_for(loaded, args.calib, args.calib_text, args.calib_samples) if needs else None
    with status(f"sparsifying with {args.method}"):
        loaded.model, report = sparsify_(loaded.model, args.method, include, exclude, calib, permute=args.permute, permute_sweeps=args.permute_sweeps, untie_tied=args.untie_tied, conv_masks=args.conv_masks)
        save_checkpoint(loaded, args.output, {"sparsify": {k: v for k, v in report.to_dict().items() if k != "check"}})
    payload = {**report.to_dict(), "checkpoint": str(args.output), "model_notes": loaded.notes}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"{args.method} 2:4 on {loaded.name}")
    for col in ("layer", "kind", "weight", "status", "kept L1", "2:4 (TRT axis)", "reason"):
        t.add_column(col)
    check = {layer.name: layer for layer in report.check.layers}
    for d in report.layers:
        c = check.get(d.name)
        colour = {"sparsified": "green", "fallback": "yellow", "skipped": "red", "excluded": "dim"}[d.status]
        t.add_row(d.name, d.kind, "x".join(map(str, d.shape)), f"[{colour}]{d.status}[/]", "-" if d.retained is None else f"{d.retained:.3f}", "yes" if c and c.is_2to4 else "no", d.reason if d.status != "sparsified" else "")
    out.print(t)
    if report.permutation:
        pt = Table(title="channel permutation: magnitude kept by a TensorRT-layout 2:4 mask")
        for col in ("layer", "reordered with", "within blocks of", "kept before", "kept after"):
            pt.add_column(col)
        for x in report.permutation.layers:
            pt.add_row(x.consumer, x.producer, str(x.block or "-"), f"{x.retained_before:.4f}", f"{x.retained_after:.4f}")
        out.print(pt if report.permutation.layers else "channel permutation: no producer/consumer pair found among the selected layers")
    for note in loaded.notes:
        out.print(f"[dim]model: {note}[/]")
    for tie in report.tied:
        cost = f"{tie.extra_bytes / 1e6:.2f} MB (fp32)"
        out.print(f"{tie.layer}: weight tied to {tie.tied_to}; " + (f"untied and sparsified: +{cost} in the checkpoint and ONNX" if tie.action == "untied" else f"kept dense (--untie-tied sparsifies it for +{cost})"))
    out.print(f"{len(report.sparsified)} of {len(report.layers)} layers are 2:4 in {report.seconds:.1f} s; checkpoint: {args.output}")
    return 0
