"""Render a GPU suite document (``gpu_suite.json``, the source of truth) as markdown and PNG plots.

Runs on any CPU after the GPU run: ``python benchmarks/gpu_suite.py render RUN/gpu_suite.json
[--out DIR]`` writes ``summary.md``, ``e2e.png`` and ``gemm.png`` (and copies the JSON and log)
into ``DIR`` (default ``benchmarks/results/<gpu-name>/``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from sparsekit._io import atomic_path, write_text_atomic

GOALS = {"gemm": 1.6, "e2e_seq384_fp16": 1.3}


def gpu_slug(doc: dict) -> str:
    """Folder name for the GPU the document was measured on (e.g. ``nvidia-h200``)."""
    pre = _job(doc, "preflight") or {}
    name = ((pre.get("result") or {}).get("facts") or {}).get("device") or "unknown-gpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _job(doc: dict, name: str) -> dict | None:
    return next((j for j in doc.get("jobs", []) if j["name"] == name), None)


def _ok_units(job: dict | None) -> list[dict]:
    return [u["result"] for u in (job or {}).get("units", []) if u.get("status") == "ok" and isinstance(u.get("result"), dict) and "speedup" in u["result"]]


def _ci(s: dict) -> str:
    return f"**{s['ratio']:.3f}x** [{s['low']:.3f}, {s['high']:.3f}]"


def _kernels(row: dict) -> str:
    k = (row.get("kernels") or {}).get("sparse") or {}
    if not k:
        return "-"
    libs = ", ".join(k.get("sparse_libraries") or []) or "none"
    total = k.get("total_us") or 0
    share = 100 * (k.get("family_us") or {}).get("sparse-gemm", 0) / total if total else 0
    return f"{k.get('sparse_gemm_calls', 0)} sparse GEMM calls ({libs}), {share:.0f}% of GPU time"


def gemm_kernel_ratio(row: dict) -> str:
    """Dense GEMM kernel time of the dense side over 2:4 GEMM kernel time of the sparse side (one profiled call).

    What the end-to-end ratio could approach if everything else cost the same on both sides.
    """
    k = row.get("kernels") or {}
    dense = ((k.get("dense") or {}).get("family_us") or {}).get("dense-gemm")
    sparse = ((k.get("sparse") or {}).get("family_us") or {}).get("sparse-gemm")
    return f"{dense / sparse:.2f}x" if dense and sparse else "-"


def model_rows(doc: dict, names: list[str]) -> list[str]:
    """Markdown table of the end-to-end rows of the named jobs."""
    lines = ["| job | seq | attention | dtype | batch | dense ms (p99) | 2:4 ms (p99) | speedup [95% CI] | Amdahl bound | GEMM kernels dense / 2:4 | max rel err | timing | sparse side ran |",
             "|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for name in names:
        job = _job(doc, name)
        dtype = ((job or {}).get("model") or {}).get("dtype", "float16")
        for r in _ok_units(job):
            if "max_rel_err_sparse_vs_dense" not in r:  # a GEMM row of a mixed job
                continue
            d, s = r["dense"], r["sparse"]
            lines.append(f"| {name} | {r.get('seq')} | {r.get('attention')} | {dtype} | {r['batch']} | {d['median']:.3f} ({d['p99']:.3f}) | {s['median']:.3f} ({s['p99']:.3f}) | {_ci(r['speedup'])} | "
                         f"{r.get('amdahl_bound', float('nan')):.2f}x | {gemm_kernel_ratio(r)} | {r['max_rel_err_sparse_vs_dense']:.1e} | {r['timing']} | {_kernels(r)} |")
    return lines


def gemm_rows(doc: dict, names: list[str]) -> list[str]:
    lines = ["| shape | dtype | M | K | N | dense us | 2:4 us | speedup [95% CI] | dense / 2:4 TFLOP/s | sparse kernel | timing |", "|---|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for name in names:
        for r in _ok_units(_job(doc, name)):
            if "k" not in r:
                continue
            k = (r.get("kernels") or {}).get("sparse") or {}
            top = next((x["name"] for x in k.get("kernels", []) if x["family"] == "sparse-gemm"), "none seen")
            lines.append(f"| {re.sub(r', M=[0-9]+', '', r['shape'])} | {r.get('dtype', 'float16')} | {r['m']} | {r['k']} | {r['n']} | {1000 * r['dense']['median']:.1f} | {1000 * r['sparse']['median']:.1f} | {_ci(r['speedup'])} | "
                         f"{r['dense_tflops']:.0f} / {r['sparse_tflops']:.0f} | `{top[:60]}` | {r['method']} |")
    return lines


def status_lines(doc: dict) -> list[str]:
    lines = ["| job | status | seconds | units ok / skipped / failed |", "|---|---|---:|---|"]
    for j in doc.get("jobs", []):
        units = j.get("units", [])
        count = {st: sum(u.get("status") == st for u in units) for st in ("ok", "skipped", "failed")}
        lines.append(f"| {j['name']} | {j['status']} | {j.get('seconds', 0):.1f} | {count['ok']} / {count['skipped']} / {count['failed']} |")
    problems = [(j["name"], u.get("label", ""), u.get("error") or {"message": u.get("reason", "")}) for j in doc.get("jobs", []) for u in j.get("units", []) if u.get("status") in ("failed", "skipped")]
    problems += [(j["name"], "(job)", j["error"]) for j in doc.get("jobs", []) if j.get("error")]
    for job, label, e in problems:
        lines.append(f"\n- {job} / {label}: {e.get('type', '')} {e.get('message', '')[:300]}")
    return lines


def render_markdown(doc: dict) -> str:
    pre = (_job(doc, "preflight") or {}).get("result") or {}
    facts = pre.get("facts") or {}
    gpu = ((facts.get("machine") or {}).get("gpus") or [{}])[0]
    ceil = pre.get("ceilings") or {}
    lines = [
        f"# GPU suite: dense vs 2:4 on {facts.get('device', 'unknown GPU')}",
        "",
        f"Measured {doc.get('started')} with `benchmarks/gpu_suite.py` (budget {doc.get('budget_seconds')} s, used {doc.get('elapsed_seconds')} s). "
        f"GPU {facts.get('device')} (CC {facts.get('compute_capability')}, {facts.get('sms')} SMs, {facts.get('memory_gib')} GiB, L2 {facts.get('l2_mib')} MiB), "
        f"driver {gpu.get('driver')}, SM clock at start {gpu.get('sm_clock_mhz')} MHz; torch {facts.get('torch')}, CUDA {facts.get('cuda')}, "
        f"cuSPARSELt {facts.get('cusparselt_version')}. Measured ceilings: fp16 matmul 8192^3 {ceil.get('fp16_matmul_8192_tflops')} TFLOP/s, "
        f"device copy {ceil.get('copy_tb_per_s_read_plus_write')} TB/s (read + write).",
        "",
        "Method: PyTorch semi-structured 2:4 kernels against dense cuBLAS on the same masked weights; paired rounds (dense and 2:4 alternate), "
        "speedup = median over rounds of dense/sparse round medians with a 95% bootstrap interval; end to end the whole forward is one CUDA graph, "
        "GEMMs are CUDA graphs of many calls (per-call time, no Python dispatch); rotated random inputs. Every model passed the correctness gate "
        "(2:4 output vs dense output) before it was timed; 'sparse side ran' is from the torch profiler. 'GEMM kernels dense / 2:4' divides the "
        "dense side's cuBLAS GEMM time by the sparse side's 2:4 GEMM time in one profiled forward: the end-to-end ratio if nothing else differed.",
        "",
        "## End to end: BERT-large-shaped encoder (24 x 1024, FFN 4096)",
        "",
        *model_rows(doc, ["bert-large-seq384", "bert-large-seq128", "attention-matmul", "bf16", "batch-1"]),
        "",
        "## GEMMs (transformer layer shapes)",
        "",
        *gemm_rows(doc, ["gemm", "gemm-large", "bf16"]),
    ]
    sel = _job(doc, "select")
    sel_units = [u for u in (sel or {}).get("units", []) if u.get("status") == "ok"]
    if sel_units:
        s = sel_units[0]["result"]
        lines += ["", "## `sparsekit select` on bert-base, batch 8", "", f"Included {len(s['include'])} layers, excluded {len(s['exclude'])} (rule: {s['rule']}, margin {s['margin']}).", "",
                  "| layer shape (M x K x N) | speedup [95% CI] | decision | layers |", "|---|---|---|---:|"]
        groups: dict = {}
        for m in s["measurements"]:
            key = (m["m"], m["k"], m["n"], m["decision"])
            groups.setdefault(key, [m, 0])[1] += 1
        for (mm, kk, nn, decision), (m, count) in groups.items():
            ci = _ci(m["speedup"]) if "speedup" in m else m.get("reason", "")
            lines.append(f"| {mm} x {kk} x {nn} | {ci} | {decision} | {count} |")
    lines += ["", "## Jobs", "", *status_lines(doc)]
    return "\n".join(lines) + "\n"


def plot_e2e(doc: dict, path: Path) -> Path | None:
    """Speedup vs batch per sequence length, with intervals and the Amdahl bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(name, [r for r in _ok_units(_job(doc, name)) if "batch" in r and "k" not in r]) for name in ("bert-large-seq384", "bert-large-seq128")]
    series = [(n, sorted(rows, key=lambda r: r["batch"])) for n, rows in series if rows]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 5.0))
    for (name, rows), colour in zip(series, ("tab:blue", "tab:orange")):
        b = [r["batch"] for r in rows]
        ratio = [r["speedup"]["ratio"] for r in rows]
        err = [[r["speedup"]["ratio"] - r["speedup"]["low"] for r in rows], [r["speedup"]["high"] - r["speedup"]["ratio"] for r in rows]]
        ax.errorbar(b, ratio, yerr=err, fmt="o-", capsize=4, color=colour, label=f"{name} measured (95% CI)")
        ax.axhline(rows[0].get("amdahl_bound", 2.0), color=colour, ls=":", lw=1, label=f"{name} Amdahl bound {rows[0].get('amdahl_bound', 2.0):.2f}x")
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.axhline(GOALS["e2e_seq384_fp16"], color="tab:green", ls="-.", lw=1, label=f"goal {GOALS['e2e_seq384_fp16']}x (seq 384)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("dense / 2:4 latency")
    ax.set_title("BERT-large-shaped encoder, fp16, PyTorch 2:4 kernels")
    ax.set_ylim(0, 2.2)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_gemm(doc: dict, path: Path) -> Path | None:
    """Horizontal bars: GEMM speedups with intervals, against the 2x limit and the goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for name in ("gemm", "gemm-large", "bf16") for r in _ok_units(_job(doc, name)) if "k" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    labels = [f"{r['shape']} {r.get('dtype', 'float16')}" for r in rows]
    ratio = [r["speedup"]["ratio"] for r in rows]
    err = [[r["speedup"]["ratio"] - r["speedup"]["low"] for r in rows], [r["speedup"]["high"] - r["speedup"]["ratio"] for r in rows]]
    ax.barh(range(len(rows)), ratio, xerr=err, color="tab:blue", capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.axvline(GOALS["gemm"], color="tab:green", ls="-.", lw=1, label=f"goal {GOALS['gemm']}x")
    ax.axvline(2.0, color="tab:red", ls=":", lw=1, label="2:4 math limit 2x")
    ax.invert_yaxis()
    ax.set_xlabel("dense / 2:4 time per GEMM")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def render(doc_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``summary.md``, ``e2e.png``, ``gemm.png`` and copies of the JSON and log into ``out``."""
    doc_path = Path(doc_path)
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise ValueError("it has no 'jobs' list")
    out = Path(out) if out else Path(__file__).resolve().parents[2] / "benchmarks" / "results" / gpu_slug(doc)
    markdown = render_markdown(doc)  # before anything is written: a foreign document leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    if doc_path.resolve() != (out / "gpu_suite.json").resolve():
        shutil.copyfile(doc_path, out / "gpu_suite.json")
        log = doc_path.with_suffix(".log")
        if log.is_file():
            shutil.copyfile(log, out / "gpu_suite.log")
    write_text_atomic(out / "summary.md", markdown)
    plot_e2e(doc, out / "e2e.png")
    plot_gemm(doc, out / "gemm.png")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_suite.py render", description="Render a GPU suite JSON as markdown and PNG (runs on CPU).")
    parser.add_argument("json", help="gpu_suite.json written by the GPU run")
    parser.add_argument("--out", help="folder (default benchmarks/results/<gpu-name>/)")
    args = parser.parse_args(argv)
    path = Path(args.json)
    if not path.is_file():
        print(f"render: '{path}' does not exist (fix: give the gpu_suite.json the GPU run wrote)", file=sys.stderr)
        return 2
    try:
        out = render(path, args.out)
    except (ValueError, KeyError) as exc:
        print(f"render: '{path}' is not a GPU suite document ({type(exc).__name__}: {exc}) (fix: give the gpu_suite.json the GPU run wrote)", file=sys.stderr)
        return 2
    print(f"rendered into {out}")
    return 0
