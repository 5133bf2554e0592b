"""``sparsekit export``: typed ONNX variants, each verified for 2:4 and ONNX Runtime parity."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import DATA_CALIB_SKIP, add_data_args, add_model_args, calibration_from_data, add_output_args, emit, err, load_from_args, out, status
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.export.config import ExportConfig
from sparsekit._io import ensure_writable_target


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export typed ONNX (fp32, fp16, int8 Q/DQ) with a dynamic batch axis, verified",
        description="Export ONNX with a dynamic batch axis. fp16 is converted by ModelOpt AutoCast (fp16 weights and math, fp32 I/O): "
        "TensorRT 11 takes precision from the ONNX. int8 inserts Q/DQ by ModelOpt PTQ on the sparse model (sparsify -> quantize, which "
        "keeps 2:4). Every file is re-checked for 2:4 (any layer sparse in PyTorch must be sparse in the ONNX) and run in ONNX Runtime "
        "against PyTorch; a file that fails is not written.",
    )
    add_model_args(p, "MODEL_OR_CKPT")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="the .onnx file for one precision, or a folder for several (files model.<precision>.onnx)")
    add_data_args(p, DATA_CALIB_SKIP)
    add_config_args(p.add_argument_group("export settings (a recipe's export: section takes the same names; --precision all writes every variant)"), ExportConfig)
    p.add_argument("--force", action="store_true", help="replace existing files")
    add_output_args(p)
    p.set_defaults(func=run)


def targets(output: str, precisions: list[str]) -> dict[str, Path]:
    """Map each precision to its output file (a folder when several precisions are asked for)."""
    if len(precisions) == 1 and output.endswith(".onnx"):
        return {precisions[0]: Path(output)}
    return {p: Path(output) / f"model.{p}.onnx" for p in precisions}


def run(args) -> int:
    from sparsekit.export.export import export_all_, report_path
    from sparsekit.export.parity import parity_text

    config = config_from_args(args, ExportConfig)
    files = targets(args.output, config.precisions)
    for f in files.values():
        ensure_writable_target(f, args.force)
        ensure_writable_target(report_path(f), args.force)
    loaded = load_from_args(args)
    config = calibration_from_data(args, config, loaded, "int8" in config.precisions)
    steps = {precision: f"[{i}/{len(files)}]" for i, precision in enumerate(files, start=1)}
    with status("starting") as spinner:
        results = export_all_(loaded, config, files, args.force, progress=lambda p, msg: spinner.update(f"{steps[p]} {msg}"))
    for r in results:
        err.print(f"[dim]{steps[r.precision]} {r.precision}: {r.path} verified in {r.seconds:.1f} s[/]")
    emit(args, {"model": loaded.name, "exports": [r.to_dict() for r in results]})
    if args.json:
        return 0
    t = Table(title=f"ONNX export of {loaded.name}")
    for col in ("precision", "file", "MB", "weights (MB by type)", "2:4 layers verified", "ORT vs PyTorch rel. err (limit)", "seconds"):
        t.add_column(col)
    for r in results:
        t.add_row(r.precision, str(r.path), f"{r.size_bytes / 1e6:.2f}", r.weights_text(), f"{len(r.sparsified)} / {len(r.sparsified)}", parity_text(r.parity.to_dict()), f"{r.seconds:.1f}")
    out.print(t)
    return 0
