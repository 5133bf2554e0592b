"""``sparsekit analyze``: per-layer 2:4 eligibility, FLOP shares and the Amdahl bound."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import add_model_args, add_output_args, emit, load_from_args, out, status, yes_no


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze", help="which layers can run 2:4 sparse on TensorRT, and the best-case speedup",
        description="For every Linear/Conv (PyTorch) or Conv/Gemm/MatMul (ONNX): weight shape, the axis TensorRT groups by 4, "
        "whether it can hold 2:4 for TensorRT, whether ModelOpt will sparsify it, whether sparse kernels are likely to win, "
        "its FLOP share, and the Amdahl bound if eligible layers ran 2x faster.",
    )
    add_model_args(p, "MODEL_OR_ONNX")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    notes: list[str] = []
    with status("analysing"):
        if args.model.endswith(".onnx"):
            from sparsekit.analyze.onnx_layers import analyze_onnx

            report = analyze_onnx(args.model)
        else:
            from sparsekit.analyze.torch_layers import analyze_model

            loaded = load_from_args(args)
            notes = loaded.notes
            report = analyze_model(loaded)
    payload = {**report.to_dict(), "model_notes": notes}
    emit(args, payload)
    if args.json:
        return 0
    t = Table(title=f"2:4 analysis of {report.source}")
    for col in ("layer", "kind", "weight", "axis", "TRT 2:4", "ModelOpt", "likely win", "GEMM M", "FLOPs %"):
        t.add_column(col, justify="right" if col in ("FLOPs %", "GEMM M", "axis") else "left")
    for layer in report.layers:
        share = "-" if layer.flop_share is None else f"{100 * layer.flop_share:.1f}"
        t.add_row(layer.name, layer.kind, "x".join(map(str, layer.shape)), str(layer.axis), yes_no(layer.trt["ok"]), yes_no(layer.magnitude["ok"]), yes_no(layer.likely_win["ok"]), str(layer.gemm_rows or "-"), share)
    out.print(t)
    s = report.summary
    out.print(
        f"{s['sparsifiable']} of {s['layers']} layers sparsifiable ({100 * s['sparsifiable_flop_share']:.1f}% of FLOPs): "
        f"Amdahl bound [bold]{s['amdahl_bound']:.2f}x[/] if they all ran 2x faster; "
        f"[bold]{s['amdahl_bound_likely_win']:.2f}x[/] if only the {s['likely_win']} wide ones likely to win did."
    )
    for note in notes:
        out.print(f"[dim]model: {note}[/]")
    for layer in report.layers:
        if layer.tied_to:
            out.print(f"  {layer.name}: {layer.magnitude['reason']}")
    reasons = [(layer.name, layer.trt["reason"]) for layer in report.layers if not layer.trt["ok"]]
    for name, reason in reasons[:10]:
        out.print(f"  [dim]{name}: not eligible: {reason}[/]")
    return 0
