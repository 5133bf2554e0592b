"""``sparsekit build``: dense and/or sparse engines from one typed ONNX, with the sparse-kernel report."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from sparsekit.backends.spec import BuildSpec, parse_shapes
from sparsekit.backends.trt_flavours import RTX_COMPUTE_CAPABILITIES
from sparsekit.cli.common import add_output_args, emit, out, status, yes_no
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.errors import OnnxModelError, SparsekitError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build", help="build dense and sparse engines from the same ONNX and report which layers ran sparse kernels",
        description="Build engines from a typed ONNX file (or a run folder, picking model.<precision>.onnx). With --sparse both, the dense and "
        "sparse builds use identical settings except TensorRT's sparse-weights flag, and the per-layer report shows, for each ONNX layer, "
        "whether its weight is 2:4, whether TensorRT found it eligible, and whether a sparse kernel was picked. Engines go to a "
        "content-addressed store; an identical request is served from it after its sha256 is re-checked. tensorrt-rtx builds ahead of time "
        "on any machine (no GPU needed) for the compute capabilities given; its kernels, sparse ones included, are chosen when the engine "
        "is first loaded on the target GPU, so its report cannot say which layers run sparse.",
    )
    p.add_argument("input", metavar="ONNX_OR_RUN_DIR", help="ONNX file, or a run folder from 'sparsekit run'/'demo'")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="ONNX variant to take from a run folder (default fp16)")
    p.add_argument("--sparse", choices=("off", "on", "both"), default="both", help="sparse-weights flag: off, on, or both builds for comparison (default both)")
    add_config_args(p, BuildSpec)
    p.add_argument("--store", default="engines", metavar="DIR", help="engine store folder (default engines/)")
    p.add_argument("--force", action="store_true", help="rebuild even if the store has this engine")
    p.add_argument("--triton", metavar="REPO", help="also export the build(s) to a Triton model repository")
    p.add_argument("--triton-name", default="model", help="model name in the Triton repository (default 'model'; '-dense'/'-sparse' appended for pairs)")
    add_output_args(p)
    p.set_defaults(func=run)


def resolve_onnx(path: str, precision: str) -> Path:
    p = Path(path)
    if p.is_dir():
        candidate = p / f"model.{precision}.onnx"
        if not candidate.is_file():
            raise OnnxModelError(f"run folder '{p}' has no model.{precision}.onnx", f"export it first (recipe export.precisions: [{precision}]) or pass an ONNX file")
        return candidate
    return p


def parse_compute_capabilities(items: list[str]) -> tuple[str, ...]:
    """``--compute-capability`` values (repeatable, comma-separated) as a tuple, checked."""
    ccs = tuple(cc.strip() for item in items for cc in item.split(",") if cc.strip())
    unknown = [cc for cc in ccs if cc not in RTX_COMPUTE_CAPABILITIES]
    if unknown:
        raise SparsekitError(f"unknown compute capability {', '.join(unknown)}", f"use values from {', '.join(RTX_COMPUTE_CAPABILITIES)} (TensorRT-RTX targets; H100/H200 at 9.0 need --backend tensorrt)")
    return ccs


def build_spec_from_args(args) -> BuildSpec:
    """The :class:`BuildSpec` of the options (``--sparse both`` gives the dense one; the pair flips it)."""
    return config_from_args(
        args, BuildSpec, sparse=args.sparse == "on", shapes=parse_shapes(args.shapes or []),
        compute_capabilities=parse_compute_capabilities(args.compute_capabilities or []),
    )


def _print_report(title: str, report: dict) -> None:
    s = report["summary"]
    t = Table(title=title)
    for col in ("layer", "2:4 in ONNX", "eligible", "sparse kernel", "tactic", "FLOPs %"):
        t.add_column(col)
    for layer in report["layers"]:
        share = "-" if layer["flop_share"] is None else f"{100 * layer['flop_share']:.1f}"
        t.add_row(layer["name"], yes_no(layer["onnx_2to4"]), yes_no(layer["eligible"]), yes_no(layer["sparse_kernel"]), layer["tactic"] or "-", share)
    out.print(t)
    if report.get("known", True):
        out.print(f"{s['onnx_2to4']} of {s['layers']} layers 2:4 in the ONNX; {s['eligible']} eligible; sparse kernels in {s['sparse_kernel']} ({100 * s['sparse_kernel_flop_share']:.1f}% of FLOPs)")
    else:
        out.print(f"{s['onnx_2to4']} of {s['layers']} layers 2:4 in the ONNX ({100 * s['onnx_2to4_flop_share']:.1f}% of FLOPs); sparse kernels: chosen on the target GPU, unknown at this build")
    if report.get("note"):
        out.print(f"[dim]{report['note']}[/]")


def run(args) -> int:
    from sparsekit.backends.build import build_engine, build_pair
    from sparsekit.onnx_io.load import load_onnx

    onnx_path = resolve_onnx(args.input, args.precision)
    spec = build_spec_from_args(args)
    model = load_onnx(onnx_path, load_external_data=False)  # once: every step below reads this model
    records = {}
    with status(f"building {onnx_path} with {spec.backend}"):
        if args.sparse == "both":
            pair = build_pair(onnx_path, spec, args.store, args.force, model)
            records = {"dense": pair.dense, "sparse": pair.sparse}
        else:
            records = {args.sparse: build_engine(onnx_path, spec, args.store, args.force, model)}
    triton = {}
    if args.triton:
        from sparsekit.backends.triton import export_triton

        for label, r in records.items():
            name = args.triton_name if len(records) == 1 else f"{args.triton_name}-{'dense' if label in ('dense', 'off') else 'sparse'}"
            triton[label] = str(export_triton([r], args.triton, name, model=model))
    payload = {"onnx": str(onnx_path), "builds": {label: {"key": r.key, "folder": str(r.folder), "artifact": str(r.artifact), "cached": r.cached, "metadata": r.metadata, "report": r.report} for label, r in records.items()}, "triton": triton}
    emit(args, payload)
    if args.json:
        return 0
    for label, r in records.items():
        _print_report(f"{label} build ({spec.backend}, {'cached' if r.cached else 'built'}): {r.artifact}", r.report)
    if len(records) == 2:
        d, s = records["dense"].metadata, records["sparse"].metadata
        diff = {k for k in d["spec"] if d["spec"][k] != s["spec"][k]}
        out.print(f"dense vs sparse specs differ only in: {', '.join(sorted(diff))}; sizes {d['artifact_bytes'] / 1e6:.2f} MB vs {s['artifact_bytes'] / 1e6:.2f} MB")
        if d["artifact_sha256"] == s["artifact_sha256"] and not records["sparse"].report.get("known", True):
            out.print("the dense and sparse engines are byte-identical: the sparse-weights flag does not change this ahead-of-time plan; kernels, sparse or dense, are chosen on the target GPU")
    for label, folder in triton.items():
        out.print(f"Triton model ({label}): {folder}")
    return 0
