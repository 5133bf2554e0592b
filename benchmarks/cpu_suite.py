"""CPU suite: checks the benchmark harness itself with ONNX Runtime (no 2:4 kernels on CPU).

  1. Overhead: the harness's ONNX Runtime runner median vs a bare ``session.run`` loop on the same
     session and inputs (target: within 2 %).
  2. A/A: dense and "sparse" builds of one ONNX run the same computation; the paired speedup
     interval should contain 1.0.

Results: benchmarks/results/cpu/harness.{json,md}, plus the A/A result's JSON/markdown/PNG.

Usage: python benchmarks/cpu_suite.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "cpu"


def bare_loop_ms(session, feeds: list[dict], iters: int) -> list[float]:
    times = []
    for i in range(iters):
        start = time.perf_counter_ns()
        session.run(None, feeds[i % len(feeds)])
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def main() -> int:
    import numpy as np

    from sparsekit.bench.harness import BenchConfig, _round, _warm
    from sparsekit.bench.stats import summarize
    from sparsekit.bench.machine import machine_facts
    from sparsekit.bench.ort_runner import OrtTimedRunner
    from sparsekit.bench.pair import bench_onnx
    from sparsekit.bench.report import write_result
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model("bert")
        loaded.model, _ = sparsify_(loaded.model, "magnitude", exclude=["head"])
        onnx_path = export_(loaded, "fp32", Path(tmp) / "bert.fp32.onnx").path
        overhead = []
        for batch in (1, 8):
            spec = loaded.inputs.with_batch(batch)
            runner = OrtTimedRunner(onnx_path, spec, buffers=8, threads=1)  # one thread: least scheduler noise
            config = BenchConfig(rounds=10, round_seconds=0.5, min_iters=20, warmup_seconds=0.5)
            _warm(runner, config.warmup_seconds)
            # Same session, same rotated inputs: harness rounds and plain-loop rounds alternate, so drift hits both.
            timed, bare = [], []
            for _ in range(config.rounds):
                got = _round(runner, config)
                timed += got
                bare += bare_loop_ms(runner._runner.session, runner._feeds, len(got))
            harness = summarize(timed, batch)
            bare_median = float(np.median(bare))
            overhead.append({"batch": batch, "harness_median_ms": harness.median, "bare_median_ms": bare_median, "difference_pct": 100 * (harness.median - bare_median) / bare_median, "harness_cov": harness.cov})
            print(f"batch {batch}: harness {harness.median:.3f} ms, bare {bare_median:.3f} ms", file=sys.stderr)
        aa = bench_onnx(onnx_path, "onnxruntime", [1, 8], BenchConfig(rounds=10, round_seconds=0.3), store=Path(tmp) / "engines", threads=1)
        aa["model"] = "bert (zoo, fp32 ONNX)"
        write_result(aa, OUT, "aa_onnxruntime_bert_fp32")
    result = {"benchmark": "cpu_harness", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_facts(), "overhead": overhead, "aa": [{"batch": r["batch"], **r["speedup"]} for r in aa["results"]]}
    (OUT / "harness.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Harness check on CPU (ONNX Runtime)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; onnxruntime {m['versions']['onnxruntime']}. Date: {result['date']}.", "",
        "## Overhead: harness runner vs a bare `session.run` loop (target: within 2 %)", "",
        "| batch | harness median ms | bare loop median ms | difference | harness CoV |", "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {o['batch']} | {o['harness_median_ms']:.3f} | {o['bare_median_ms']:.3f} | {o['difference_pct']:+.2f}% | {100 * o['harness_cov']:.1f}% |" for o in overhead]
    lines += ["", "## A/A: dense and sparse builds of the same ONNX (no 2:4 kernels on CPU; the interval should contain 1.0)", "", "| batch | ratio | 95% CI | contains 1.0 |", "|---:|---:|---|---|"]
    lines += [f"| {a['batch']} | {a['ratio']:.3f} | {a['low']:.3f}-{a['high']:.3f} | {'yes' if a['low'] <= 1.0 <= a['high'] else 'NO'} |" for a in result["aa"]]
    (OUT / "harness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
