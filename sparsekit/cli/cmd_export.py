"""``sparsekit export``: typed ONNX variants, each verified for 2:4 and ONNX Runtime parity."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, emit, err, load_from_args, out, status


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
    p.add_argument("--precision", action="append", choices=("fp32", "fp16", "int8", "all"), help="variant(s) to write (repeatable; default fp16)")
    p.add_argument("--calib", metavar="DATA", help="INT8 calibration data (.pt/.npy/.npz or module:function); default: random inputs")
    p.add_argument("--calib-text", metavar="FILE", help="INT8 calibration on real text, one sample per line, tokenized by the tokenizer of the hf:DIR model folder")
    p.add_argument("--calib-samples", type=int, default=128, metavar="N", help="random calibration samples for int8, or lines of --calib-text used (default 128)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--external-data", action="store_true", help="write the weights to <file>.onnx.data next to each ONNX (ONNX's external-data layout); automatic past the 2 GiB one ONNX file can hold")
    p.add_argument("--force", action="store_true", help="replace existing files")
    add_output_args(p)
    p.set_defaults(func=run)


def targets(output: str, precisions: list[str]) -> dict[str, Path]:
    """Map each precision to its output file (a folder when several precisions are asked for)."""
    if len(precisions) == 1 and output.endswith(".onnx"):
        return {precisions[0]: Path(output)}
    return {p: Path(output) / f"model.{p}.onnx" for p in precisions}


def run(args) -> int:
    from sparsekit._io import ensure_writable_target
    from sparsekit.export.export import export_, report_path
    from sparsekit.export.parity import parity_text
    from sparsekit.models.calib import calibration_for

    precisions = args.precision or ["fp16"]
    if "all" in precisions:
        precisions = ["fp32", "fp16", "int8"]
    precisions = list(dict.fromkeys(precisions))
    files = targets(args.output, precisions)
    for f in files.values():
        ensure_writable_target(f, args.force)
        ensure_writable_target(report_path(f), args.force)
    loaded = load_from_args(args)
    calib = calibration_for(loaded, args.calib, args.calib_text, args.calib_samples) if "int8" in precisions else None
    results = []
    for i, (precision, path) in enumerate(files.items(), start=1):
        step = f"[{i}/{len(files)}]"
        with status(f"{step} {precision}: starting") as spinner:
            result = export_(loaded, precision, path, calib if precision == "int8" else None, args.force, args.opset, external_data=True if args.external_data else None, progress=lambda msg, s=step, sp=spinner: sp.update(f"{s} {msg}"))
        results.append(result)
        err.print(f"[dim]{step} {precision}: {path} verified in {result.seconds:.1f} s[/]")
    emit(args, {"model": loaded.name, "exports": [r.to_dict() for r in results]})
    if args.json:
        return 0
    t = Table(title=f"ONNX export of {loaded.name}")
    for col in ("precision", "file", "MB", "2:4 layers verified", "ORT vs PyTorch rel. err (limit)", "seconds"):
        t.add_column(col)
    for r in results:
        t.add_row(r.precision, str(r.path), f"{r.size_bytes / 1e6:.2f}", f"{len(r.sparsified)} / {len(r.sparsified)}", parity_text(r.parity.to_dict()), f"{r.seconds:.1f}")
    out.print(t)
    return 0
