"""``sparsekit check``: verify 2:4 on TensorRT's axis in a checkpoint or ONNX file."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import add_input_args, add_output_args, add_trust_args, emit, input_options, out, status, yes_no


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check", help="verify 2:4 on TensorRT's axis, layer by layer (exit 3 when a required layer is not)",
        description="Check every Linear/Conv weight of a sparsekit checkpoint, or every constant Conv/Gemm/MatMul weight of an ONNX "
        "file (followed through Q/DQ, Cast and Transpose), for 2:4 along the axis TensorRT groups by 4. "
        "Exit status 3 when a required layer is not 2:4. Without --require, a checkpoint requires its sparsified (masked) layers and an "
        "ONNX the layers its export recorded as 2:4 in its metadata; a --require pattern that matches no layer, or a check that requires "
        "nothing, is an error (exit 2), as is an empty or non-ONNX file.",
    )
    p.add_argument("path", metavar="CKPT_OR_ONNX", help="sparsekit checkpoint (.pt) or ONNX file")
    p.add_argument("--require", action="append", default=[], metavar="PATTERN", help="fnmatch pattern of layers (or initializers) that must be 2:4 (repeatable)")
    p.add_argument("--require-eligible", action="store_true", help="every layer TensorRT could run sparse and 'sparsify' would sparsify (its shape rules) must be 2:4")
    add_input_args(p)
    add_trust_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit.sparsify.check_file import check_file, raise_if_failed

    with status("checking 2:4"):
        report = check_file(args.path, args.require, args.require_eligible, input_options(args))
    payload = report.to_dict()
    emit(args, payload)
    if not args.json:
        t = Table(title=f"2:4 check of {report.source} (TensorRT axis)")
        for col in ("layer", "kind", "weight", "dtype", "axis", "2:4 groups", "zeros %", "2:4", "TRT eligible", "required"):
            t.add_column(col)
        for layer in report.layers:
            ok = layer.is_2to4
            t.add_row(layer.name, layer.kind, "x".join(map(str, layer.shape)), layer.dtype, str(layer.axis), f"{layer.conforming}/{layer.groups}", f"{100 * layer.zero_fraction:.1f}", yes_no(ok), yes_no(layer.eligible), ("[red]FAIL[/]" if not ok else "[green]ok[/]") if layer.required else "")
        out.print(t)
        s = payload["summary"]
        out.print(f"{s['sparse_2to4']} of {s['layers']} weights are 2:4 ({s['trt_sparse']} of them TensorRT-eligible); {s['required']} required, {len(s['failures'])} failing" + (f", {len(s['missing'])} recorded layer(s) missing" if s["missing"] else ""))
        for layer in [x for x in report.required if x.is_2to4 and not x.eligible][:10]:
            out.print(f"  [dim]{layer.name}: 2:4, but TensorRT cannot run it sparse: {layer.reason}[/]")
        for layer in [x for x in report.layers if x.zero.startswith(("values not judged", "zero point '"))][:10]:
            out.print(f"  [dim]{layer.name}: {layer.zero}[/]")
    raise_if_failed(report)
    return 0
