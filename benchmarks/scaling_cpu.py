"""CPU benchmark: how memory and time of sparsify, export and check grow with the model.

Models: ResNet-50 (25.6 M parameters), BERT-base (110 M), BERT-large shape (24 layers, hidden
1024, FFN 4096, sequence 384; 335 M) and a Llama-architecture decoder built from a config in code
(``benchmarks/models/llama_decoder.py``: hidden 2048, 16 layers, FFN 8192, 32 heads / 8 key-value
heads, vocabulary 32000, sequence 128; 1.1 B), all with random weights.

Every (model, stage) runs in a fresh process, as the CLI commands do: ``sparsify`` builds the
model, sparsifies it (magnitude) and saves a checkpoint; each ``export`` loads that checkpoint
and writes one verified ONNX (2:4 check + ONNX Runtime parity included); ``check`` checks the fp16
ONNX. A sampler thread reads the process's resident memory every 20 ms and the 1-minute load
average every second: a stage's peak RSS is the largest value seen while the stage's library
call ran (for an export: with the model resident, after loading the checkpoint, which is timed
and measured separately). Goal (the scaling issue): peak RSS under 2.5x the fp32 weight bytes
+ 2 GiB at every size, and time roughly linear in parameters.

Results: ``benchmarks/results/cpu/scaling.{json,md}``.

Usage: python benchmarks/scaling_cpu.py [--models resnet50 bert-base bert-large llama-1b]
       [--stages sparsify export-fp16 export-int8 check] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cpu"
DECODER = f"{HERE / 'models' / 'llama_decoder.py'}:build"

MODELS = {
    "resnet50": {"source": "resnet50", "args": {}, "shape": "ResNet-50, 3x224x224", "calib_samples": 128},
    "bert-base": {"source": "bert-base", "args": {}, "shape": "12 x 768, FFN 3072, seq 128", "calib_samples": 128},
    "bert-large": {"source": "bert-base", "args": {"hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "seq": 384}, "shape": "24 x 1024, FFN 4096, seq 384", "calib_samples": 128},
    "llama-1b": {"source": DECODER, "args": {}, "shape": "Llama decoder 16 x 2048, FFN 8192, GQA 32/8, vocab 32000, seq 128", "calib_samples": 16},
}
STAGES = ("sparsify", "export-fp16", "export-int8", "check")
GIB = 2**30


class Sampler:
    """Peak RSS (MiB) and load average over a block, sampled from a thread."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        last_load = 0.0
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss_mib())
            now = time.monotonic()
            if now - last_load >= 1.0:
                self.loads.append(os.getloadavg()[0])
                last_load = now
            self._stop.wait(0.02)

    def __enter__(self) -> "Sampler":
        self.start_rss = self.rss_mib()
        self.peak = self.start_rss
        self.t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_mib())
        self.loads.append(os.getloadavg()[0])

    def to_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 1), "peak_rss_mib": round(self.peak), "rss_at_start_mib": round(self.start_rss),
            "load_avg_mean": round(sum(self.loads) / len(self.loads), 2), "load_avg_max": round(max(self.loads), 2),
        }


def _checkpoint(workdir: Path, model: str) -> Path:
    return workdir / f"{model}.sparse.pt"


def _onnx(workdir: Path, model: str, precision: str) -> Path:
    return workdir / f"{model}.{precision}.onnx"


def child(model: str, stage: str, workdir: Path) -> dict:
    """One stage of one model, in this (fresh) process."""
    import torch

    from sparsekit._memory import release_memory
    from sparsekit.models.source import load_model

    entry = MODELS[model]
    out: dict = {"model": model, "stage": stage}
    if stage == "sparsify":
        from sparsekit.models.checkpoint import save_checkpoint
        from sparsekit.sparsify.sparsify import sparsify_

        torch.manual_seed(0)
        loaded = load_model(entry["source"], entry["args"])
        params = sum(p.numel() for p in loaded.model.parameters())
        out.update(params=params, fp32_weight_bytes=4 * params)
        release_memory()
        with Sampler() as s:
            loaded.model, report = sparsify_(loaded.model, "magnitude")
        out.update(s.to_dict(), sparsified_layers=len(report.sparsified))
        save_checkpoint(loaded, _checkpoint(workdir, model))
    elif stage.startswith("export-"):
        from sparsekit.export.export import export_
        from sparsekit.models.calib import load_calibration

        precision = stage.split("-", 1)[1]
        torch.manual_seed(0)
        with Sampler() as load:
            loaded = load_model(str(_checkpoint(workdir, model)))
        out["load_checkpoint"] = load.to_dict()
        calib = load_calibration(None, loaded.inputs, entry["calib_samples"]) if precision == "int8" else None
        release_memory()
        with Sampler() as s:
            r = export_(loaded, precision, _onnx(workdir, model, precision), calib=calib, force=True)
        out.update(s.to_dict(), onnx_bytes=r.size_bytes, external_data=r.data_path is not None, sparse_layers_verified=len(r.sparsified),
                   check_passed=r.check.passed, parity_max_rel=r.parity.max_rel, parity_rel_l2=r.parity.rel_l2, parity_noise_rel_l2=r.parity.noise_rel_l2,
                   parity_passed=r.parity.passed, calib_samples=entry["calib_samples"] if calib else None)
    elif stage == "check":
        from sparsekit.sparsify.check import check_onnx

        with Sampler() as s:
            report = check_onnx(_onnx(workdir, model, "fp16"))
        out.update(s.to_dict(), layers=len(report.layers), required=len(report.required), passed=report.passed)
    else:
        raise SystemExit(f"unknown stage {stage}")
    out["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _limit_mib(weight_bytes: int) -> float:
    return 2.5 * weight_bytes / 2**20 + 2 * GIB / 2**20


def render(results: dict) -> str:
    from sparsekit.bench.machine import machine_line
    m = results["machine"]
    lines = [
        "# Scaling on CPU: sparsify, export and check from 25 M to 1.1 B parameters",
        "",
        machine_line(m, ('torch', 'nvidia-modelopt', 'onnxruntime')) + f" Date: {results['date']}.",
        "Each stage ran in a fresh process (sparsify saves a checkpoint; each export loads it). Peak RSS: the most resident memory "
        "seen (sampled every 20 ms) while the stage ran, with the model resident for sparsify and export. Goal: under 2.5x the fp32 "
        "weight bytes + 2 GiB. Machine load: the 1-minute load average during the stage (mean / max); above 2 (the core count), "
        "other processes ran beside the stage and its time carries that noise.",
        "",
        "| model | stage | seconds | s per 100 M params | peak RSS MiB | goal MiB | meets | RSS at start MiB | ONNX MB | ORT rel. err | load avg |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in results["rows"]:
        w = r["fp32_weight_bytes"]
        limit = _limit_mib(w)
        size = f"{r['onnx_bytes'] / 1e6:.0f}{' (ext.)' if r.get('external_data') else ''}" if "onnx_bytes" in r else "-"
        err = f"{r['parity_max_rel']:.1e}" if "parity_max_rel" in r else "-"
        if r.get("parity_noise_rel_l2") is not None:
            err += f"; L2 {r['parity_rel_l2']:.1e} vs noise {r['parity_noise_rel_l2']:.1e}"
        per = r["seconds"] / (r["params"] / 1e8)
        lines.append(
            f"| {r['model']} ({r['params'] / 1e6:.0f} M, {w / GIB:.2f} GiB fp32) | {r['stage']} | {r['seconds']} | {per:.1f} | {r['peak_rss_mib']} | {limit:.0f} | "
            f"{'yes' if r['peak_rss_mib'] < limit else 'NO'} | {r['rss_at_start_mib']} | {size} | {err} | {r['load_avg_mean']:.1f} / {r['load_avg_max']:.1f} |"
        )
    loads = [r["load_checkpoint"] for r in results["rows"] if "load_checkpoint" in r]
    if loads:
        lines += ["", "Loading the checkpoint before each export (not part of the export rows): " + ", ".join(
            f"{r['model']} {r['stage']}: {r['load_checkpoint']['seconds']} s, peak {r['load_checkpoint']['peak_rss_mib']} MiB" for r in results["rows"] if "load_checkpoint" in r) + "."]
    misses = [f"{r['model']} {r['stage']}" for r in results["rows"] if r["peak_rss_mib"] >= _limit_mib(r["fp32_weight_bytes"])]
    lines += ["", "Memory goal: " + (f"missed by {', '.join(misses)}." if misses else "met by every row.")]
    models = results.get("models", {})
    calib = ", ".join(f"{name} {spec['calib_samples']}" for name, spec in models.items() if "calib_samples" in spec)
    if calib:
        lines.append(
            "Time: export-int8 includes calibration, a forward pass per sample (samples: " + calib + "), so its time also follows "
            "samples x sequence length, not parameters alone; the other stages' seconds per 100 M parameters stay within a "
            "small factor from 25 M to 1.1 B parameters (fixed costs weigh more on the smallest model)."
        )
    return "\n".join(lines) + "\n"


def _run_child(model: str, stage: str, workdir: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", model, "--stage", stage, "--workdir", str(workdir)]
    print(f"{model}: {stage} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        return {"model": model, "stage": stage, "failed": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES) + ["export-fp32"])
    parser.add_argument("--workdir", help="where checkpoints and ONNX files go (default: a temporary folder, removed after each model)")
    parser.add_argument("--merge", action="store_true", help="keep rows of models not run now from the committed JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(HERE.parent))
        print(json.dumps(child(args.child, args.stage, Path(args.workdir))))
        return 0
    from sparsekit.bench.machine import machine_facts

    rows = []
    for model in args.models:
        workdir = Path(args.workdir) / model if args.workdir else Path(tempfile.mkdtemp(prefix=f"scaling-{model}-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            found: dict = {}
            for stage in args.stages:
                row = _run_child(model, stage, workdir)
                if "failed" in row:
                    print(f"{model} {stage} failed: {row['failed']}", file=sys.stderr)
                    rows.append(row)
                    break
                found.setdefault("params", row.get("params"))
                found.setdefault("fp32_weight_bytes", row.get("fp32_weight_bytes"))
                row.setdefault("params", found["params"])
                row.setdefault("fp32_weight_bytes", found["fp32_weight_bytes"])
                rows.append(row)
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    results = {"benchmark": "scaling_cpu", "date": time.strftime("%Y-%m-%d"), "machine": machine_facts(), "models": {k: MODELS[k] for k in args.models}, "rows": rows}
    path = RESULTS / "scaling.json"
    if args.merge and path.exists():
        old = json.loads(path.read_text())
        results["rows"] = [r for r in old["rows"] if r["model"] not in args.models] + rows
        results["models"] = {**old.get("models", {}), **results["models"]}
    order = {**{m: i for i, m in enumerate(MODELS)}, **{s: i for i, s in enumerate(STAGES)}}
    results["rows"].sort(key=lambda r: (order.get(r["model"], len(order)), order.get(r["stage"], len(order))))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    ok = [r for r in results["rows"] if "failed" not in r]
    results_ok = {**results, "rows": ok}
    text = render(results_ok)
    failed = [r for r in results["rows"] if "failed" in r]
    if failed:
        text += "\nFailed: " + "; ".join(f"{r['model']} {r['stage']}: {r['failed']}" for r in failed) + "\n"
    (RESULTS / "scaling.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
