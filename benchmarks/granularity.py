"""Granularity table: what each pruning granularity costs in accuracy and buys in size and speed.

Cases (``sparsekit.tasks``):
- ``digits8``: the zoo CNN (32-64-128 channels, residual blocks) on scikit-learn's 8x8 digits.
- ``digits32``: the same CNN on the digits upsampled to 32x32 (a CIFAR-sized input, 16x the
  activations; the images are still digits, not CIFAR).
- ``minilm``: the pretrained all-MiniLM-L6-v2 encoder on stdlib docstring retrieval (recall@1);
  channel pruning removes whole attention heads and FFN neurons, never the residual stream.

Rows, each compressed from the same dense model and then fine-tuned with the same budget,
distilled from the dense model: dense; unstructured 50% (magnitude); 2:4 (magnitude, TensorRT
layout); channel 25% and 50% (L1 filter norm, widths multiple of 16); channel 25% + 2:4; + INT8
(PTQ on the previous row); low-rank (truncated SVD at half rank, Linear layers). Columns:
parameters (and non-zero weights), FLOPs per sample (dense kernels), ONNX bytes (fp32, int8 for
the INT8 row), accuracy one-shot and fine-tuned with the paired bootstrap difference to dense,
and the ONNX Runtime CPU latency ratio dense / row with its 95% interval (interleaved rounds).
No GPU is used: the GPU column says so.

Usage: python benchmarks/granularity.py [--cases digits8 digits32 minilm] [--quick] [--out DIR]
       python benchmarks/granularity.py render [--out DIR] [--note TEXT]
Results: ``<out>/granularity.{json,md,png}`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy import Progress  # noqa: E402 - the accuracy table's progress bar, one per training run


@dataclass
class Case:
    task: str
    task_args: dict = field(default_factory=dict)
    dense_epochs: int = 0
    dense_lr: float = 3e-3
    ft_epochs: int = 2
    ft_lr: float = 1e-3
    batch: int = 64
    features: bool = False
    student_loss_weight: float = 0.5
    keep_dense: tuple = ("head",)
    latency_batch: int = 32
    calib_samples: int = 256


CASES = {
    "digits8": Case("digits", dense_epochs=10),
    "digits32": Case("digits", {"image_size": 32}, dense_epochs=6),
    # One epoch of distillation per row (about 90 s on 2 cores for the unpruned encoder).
    "minilm": Case("docstrings", ft_epochs=1, ft_lr=3e-4, batch=32, features=True, student_loss_weight=0.0, keep_dense=(), latency_batch=8, calib_samples=200),
}
GPU_NOTE = {
    "dense": "reference",
    "unstructured 50%": "no change: dense GPU kernels multiply the zeros too",
    "2:4": "faster only on a GPU (sparse Tensor Cores, TensorRT); CPU runs it dense",
    "channel 25%": "faster on any GPU (smaller dense GEMMs/convs), by less than FLOPs at small batch",
    "channel 50%": "as channel 25%",
    "channel 25% + 2:4": "the channel gain everywhere, the 2:4 gain only on a GPU",
    "+ INT8": "INT8 Tensor Cores on a GPU; ONNX Runtime CPU runs the Q/DQ graph with its own int8 kernels",
    "low-rank 0.5": "faster where the two thin GEMMs beat the one wide GEMM (large batch x tokens)",
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _nonzero(model) -> int:
    from torch import nn

    return sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


def _latency(onnx_dense: Path, onnx_row: Path, inputs, batch: int) -> dict:
    from sparsekit.bench.harness import BenchConfig, measure_pair
    from sparsekit.bench.ort_runner import OrtTimedRunner

    spec = inputs.with_batch(batch)
    config = BenchConfig(warmup_seconds=0.5, rounds=12, round_seconds=0.4, min_iters=5)
    pair = measure_pair(OrtTimedRunner(onnx_dense, spec, threads=2), OrtTimedRunner(onnx_row, spec, threads=2), batch, config)
    return {"ratio": round(pair.speedup.ratio, 3), "low": round(pair.speedup.low, 3), "high": round(pair.speedup.high, 3), "dense_ms": round(pair.dense.median, 3), "row_ms": round(pair.sparse.median, 3), "batch": batch}


def run_case(name: str, case: Case, quick: bool, work: Path) -> dict:
    import torch

    from sparsekit.analyze.flops import layer_flops
    from sparsekit.bench.stats import paired_difference
    from sparsekit.export.export import export_
    from sparsekit.models.loaded import LoadedModel
    from sparsekit.models.source import load_model
    from sparsekit.prune.channels import prune_channels_
    from sparsekit.prune.lowrank import factorize_
    from sparsekit.prune.unstructured import prune_unstructured_
    from sparsekit.quantize.ptq import quantize_
    from sparsekit.recover.finetune import TrainingConfig
    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
    from sparsekit.sparsify.sparsify import sparsify_
    from sparsekit.tasks import get_task

    torch.manual_seed(0)
    task = get_task(case.task, **case.task_args)
    loaded = load_model(*task.model)
    epochs = 1 if quick else case.ft_epochs
    t0 = time.perf_counter()
    if case.dense_epochs:
        loaded.model, _ = finetune_on_task_(loaded.model, task, TrainingConfig(epochs=2 if quick else case.dense_epochs, lr=case.dense_lr), case.batch, progress=Progress(f"{name} dense"))
    dense_seconds = time.perf_counter() - t0
    dense = loaded.model.eval()
    for p in dense.parameters():
        p.requires_grad_(False)
    reference = task.evaluate(dense)
    one = loaded.inputs.random(batch=1)
    distill = DistillConfig(features=case.features, student_loss_weight=case.student_loss_weight)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def fresh() -> LoadedModel:
        model = copy.deepcopy(dense)
        for p in model.parameters():
            p.requires_grad_(True)
        return LoadedModel(model, loaded.inputs, dict(loaded.source))

    def export(row_loaded: LoadedModel, precision: str, stem: str) -> Path:
        path = folder / f"{stem}.{precision}.onnx"
        calib = task.calibration(case.calib_samples) if precision == "int8" else None
        export_(row_loaded, precision, path, calib, force=True)
        return path

    dense_onnx = export(LoadedModel(dense, loaded.inputs, loaded.source), "fp32", "dense")

    def record(label: str, row_loaded: LoadedModel, one_shot, seconds: float, precision: str = "fp32", note: str = "") -> None:
        result = task.evaluate(row_loaded.model, reference)
        onnx = dense_onnx if label == "dense" else export(row_loaded, precision, label.replace(" ", "_").replace("%", "").replace(":", "").replace("+", "plus"))
        row = {
            "row": label, "params": sum(p.numel() for p in row_loaded.model.parameters()), "nonzero_weights": _nonzero(row_loaded.model),
            "flops": layer_flops(row_loaded.model, one)[2], "onnx_bytes": onnx.stat().st_size + sum(f.stat().st_size for f in onnx.parent.glob(onnx.name + ".data")),
            "one_shot": None if one_shot is None else {k: round(v, 4) for k, v in one_shot.metrics.items()},
            "one_shot_diff": None if one_shot is None else paired_difference(reference.per_item, one_shot.per_item).to_dict(),
            "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
            "diff": None if label == "dense" else paired_difference(reference.per_item, result.per_item).to_dict(),
            "latency": None if label == "dense" else _latency(dense_onnx, onnx, loaded.inputs, case.latency_batch),
            "gpu": GPU_NOTE[label], "seconds": round(seconds, 1), "note": note,
        }
        rows.append(row)
        _say(f"[{name}] {label}: {row['metrics']} params {row['params']:,} flops {row['flops']:,} latency {row['latency']}")

    def tune(row_loaded: LoadedModel, label: str, keep_zeros: bool = False) -> float:
        config = TrainingConfig(epochs=epochs, lr=case.ft_lr, keep_zeros=keep_zeros)
        row_loaded.model, report = finetune_on_task_(row_loaded.model, task, config, case.batch, dense, distill, progress=Progress(f"{name} {label}"))
        return report.seconds

    record("dense", LoadedModel(dense, loaded.inputs, loaded.source), None, dense_seconds)

    t = time.perf_counter()
    row = fresh()
    u = prune_unstructured_(row.model, 0.5, exclude=case.keep_dense)
    one_shot = task.evaluate(row.model, reference)
    tune(row, "unstructured", keep_zeros=True)
    record("unstructured 50%", row, one_shot, time.perf_counter() - t, note=f"{u.sparsity:.1%} of the pruned layers' weights are zero")

    t = time.perf_counter()
    row = fresh()
    row.model, sp = sparsify_(row.model, "magnitude", exclude=list(case.keep_dense))
    one_shot = task.evaluate(row.model, reference)
    tune(row, "2:4")
    record("2:4", row, one_shot, time.perf_counter() - t, note=f"{len(sp.sparsified)} layers 2:4 (magnitude, TensorRT layout)")

    stacked = None
    for share in (0.25, 0.5):
        t = time.perf_counter()
        row = fresh()
        pr = prune_channels_(row, share, "l1", 16, exclude=list(case.keep_dense))
        one_shot = task.evaluate(row.model, reference)
        tune(row, f"channel {share:.0%}")
        heads = f"; heads {sum(b for b, _ in pr.heads.values())} -> {sum(a for _, a in pr.heads.values())}" if pr.heads else ""
        record(f"channel {share:.0%}", row, one_shot, time.perf_counter() - t, note=f"{len(pr.layers)} layers narrower{heads}")
        if share == 0.25:
            stacked = (LoadedModel(copy.deepcopy(row.model), row.inputs, dict(row.source)), time.perf_counter() - t)

    t = time.perf_counter()
    row = stacked[0]
    row.model, sp = sparsify_(row.model, "magnitude", exclude=list(case.keep_dense))
    one_shot = task.evaluate(row.model, reference)
    tune(row, "channel + 2:4")
    record("channel 25% + 2:4", row, one_shot, time.perf_counter() - t + stacked[1], note=f"from the fine-tuned channel 25% row; {len(sp.sparsified)} layers 2:4")

    t = time.perf_counter()
    row.model = quantize_(row.model, task.calibration(case.calib_samples), "int8")
    record("+ INT8", row, None, time.perf_counter() - t, precision="int8", note="INT8 PTQ (max calibration) on the previous row; ONNX with Q/DQ, 2:4 verified behind DequantizeLinear")

    t = time.perf_counter()
    row = fresh()
    try:
        lr = factorize_(row, 0.5, exclude=list(case.keep_dense))
    except Exception as exc:  # noqa: BLE001 - a model with nothing to factorise gets a row saying so
        rows.append({"row": "low-rank 0.5", "skipped": str(exc).splitlines()[0], "gpu": GPU_NOTE["low-rank 0.5"]})
        _say(f"[{name}] low-rank skipped: {exc}")
    else:
        one_shot = task.evaluate(row.model, reference)
        tune(row, "low-rank")
        record("low-rank 0.5", row, one_shot, time.perf_counter() - t, note=f"{len(lr.layers)} Linear layers factorised")
    return {"task": task.name, "description": task.description + (f", images upsampled to {case.task_args['image_size']}x{case.task_args['image_size']}" if case.task_args.get("image_size") else ""), "primary": task.primary, "settings": case.__dict__ | {"ft_epochs": epochs}, "rows": rows}


def _in_order(cases: dict) -> list[tuple[str, dict]]:
    """Cases in :data:`CASES` order (the JSON stores them key-sorted)."""
    order = list(CASES)
    return sorted(cases.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _ci(d: dict | None, digits: int = 1) -> str:
    return "" if d is None else f"{d['diff']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def render_markdown(report: dict) -> str:
    from sparsekit.bench.machine import machine_line
    m = report["machine"]
    lines = [
        "# Pruning granularity: accuracy, size and CPU speed",
        "",
        machine_line(m, ('torch', 'nvidia-modelopt', 'onnxruntime')) + " CPU only: no GPU was used.",
        f"Command: `{report['command']}` ({report['minutes']:.1f} min in total).",
        "",
        "Every row starts from the same dense model, is compressed, then fine-tuned with the same budget (distilled from the dense model; "
        "zeros and 2:4 masks kept). FLOPs per sample count what dense kernels compute (zeros included). Latency: ONNX Runtime on the CPU, "
        "fp32 ONNX (int8 Q/DQ for the INT8 row), dense / row median over interleaved rounds with a 95% bootstrap interval (> 1 = faster). "
        "A CPU has no 2:4 kernels: 2:4 rows can only show their gain on an Ampere+ GPU, which this run did not have (GPU column).",
        "",
        *([f"Note: {report['note']}", ""] if report.get("note") else []),
    ]
    for name, case in _in_order(report["cases"]):
        primary = case["primary"]
        lines += [f"## {name}: {case['description']}", "", f"Fine-tuning per row: {case['settings']['ft_epochs']} epoch(s), lr {case['settings']['ft_lr']}, batch {case['settings']['batch']}; latency at batch {case['settings']['latency_batch']}.", ""]
        lines += [f"| row | params | non-zero Linear/Conv weights | FLOPs/sample | ONNX MB | {primary} one-shot | {primary} fine-tuned | vs dense, points [95% CI] | CPU ORT speedup [95% CI] | GPU | CPU s | notes |", "|---" * 12 + "|"]
        for r in case["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['row']} | | | | | | | | | {r['gpu']} | | not run: {r['skipped']} |")
                continue
            lat = r["latency"]
            lat_text = "1 (reference)" if lat is None else f"{lat['ratio']:.2f}x [{lat['low']:.2f}, {lat['high']:.2f}]"
            one = "" if r["one_shot"] is None else f"{r['one_shot'][primary]:.1f}"
            extra = "".join(f"; {k} {v:.3f}" for k, v in r["metrics"].items() if k not in (primary, "agreement"))
            lines.append(f"| {r['row']} | {r['params']:,} | {r['nonzero_weights']:,} | {r['flops'] / 1e6:,.1f} M | {r['onnx_bytes'] / 1e6:.2f} | {one} | {r['metrics'][primary]:.1f} | {_ci(r['diff'])} | {lat_text} | not measured: {r['gpu']} | {r['seconds']:.0f} | {r['note']}{extra} |")
        lines.append("")
    lines += [
        "## What a GPU would change",
        "",
        "- **2:4** rows: only an Ampere+ GPU (TensorRT, cuSPARSELt) runs 2:4 weights on sparse Tensor Cores; their CPU ratio is about 1 by construction.",
        "- **+ INT8**: INT8 Tensor Cores; ONNX Runtime's CPU int8 kernels are a different trade-off.",
        "- **channel** and **low-rank**: smaller dense work, faster on any hardware; on a GPU at small batch the kernels are launch- or memory-bound, so the gain is below the FLOP ratio.",
        "- **unstructured**: nothing; no dense kernel skips scattered zeros (the ONNX is as large and as slow).",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), squeeze=False)
    for ax, (name, case) in zip(axes[0], _in_order(cases)):
        primary = case["primary"]
        for r in case["rows"]:
            if "skipped" in r:
                continue
            x = r["flops"] / case["rows"][0]["flops"]
            ax.scatter(x, r["metrics"][primary], s=40)
            ax.annotate(r["row"], (x, r["metrics"][primary]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("FLOPs per sample, share of dense (dense kernels)")
        ax.set_ylabel(f"{primary} after fine-tuning")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(argv: list[str]) -> int:
    """``render [--out DIR] [--note TEXT]``: redraw the markdown and the plot from the JSON (any machine)."""
    from sparsekit._io import write_json_atomic, write_text_atomic

    ap = argparse.ArgumentParser(prog="granularity.py render")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--note", help="a line about the run, kept in the JSON and shown under the method")
    args = ap.parse_args(argv)
    report = json.loads((args.out / "granularity.json").read_text(encoding="utf-8"))
    if args.note:
        report["note"] = args.note
        write_json_atomic(args.out / "granularity.json", report)
    write_text_atomic(args.out / "granularity.md", render_markdown(report))
    plot(report, args.out / "granularity.png")
    print(f"wrote {args.out / 'granularity.md'}")
    return 0


def main(argv=None) -> int:
    from sparsekit._io import write_json_atomic, write_text_atomic
    from sparsekit.bench.machine import machine_facts

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["render"]:
        return render(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="'python benchmarks/granularity.py render' redraws the tables and the plot from the JSON.")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--quick", action="store_true", help="one fine-tuning epoch per row and short dense training: a smoke run")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, help="folder for the ONNX files (default: a temporary folder)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        cases = {name: run_case(name, CASES[name], args.quick, work) for name in args.cases}
    report = {"machine": machine_facts(), "command": "python benchmarks/granularity.py " + " ".join(argv), "minutes": (time.perf_counter() - start) / 60, "cases": cases}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "granularity.json", report)
    write_text_atomic(args.out / "granularity.md", render_markdown(report))
    plot(report, args.out / "granularity.png")
    print(f"wrote {args.out / 'granularity.md'} ({report['minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
