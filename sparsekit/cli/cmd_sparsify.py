"""``sparsekit sparsify``: 2:4 through ModelOpt, masks in TensorRT's layout, saved as a checkpoint."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import DATA_CALIB_SKIP, add_data_args, add_model_args, calibration_from_data, add_output_args, emit, load_from_args, out, status
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.sparsify.config import SparsifyConfig
from sparsekit._io import ensure_writable_target


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
    add_data_args(p, DATA_CALIB_SKIP)
    add_config_args(p.add_argument_group("sparsify settings (a recipe's sparsify: section takes the same names)"), SparsifyConfig)
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.sparsify.sparsify import sparsify_loaded_

    ensure_writable_target(args.output, args.force)
    config = config_from_args(args, SparsifyConfig)
    loaded = load_from_args(args)
    config = calibration_from_data(args, config, loaded, config.needs_calibration)
    with status(f"sparsifying with {config.method}"):
        report = sparsify_loaded_(loaded, config)
        save_checkpoint(loaded, args.output, {"sparsify": {k: v for k, v in report.to_dict().items() if k != "check"}})
    payload = {**report.to_dict(), "checkpoint": str(args.output), "model_notes": loaded.notes}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"{config.method} 2:4 on {loaded.name}")
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
