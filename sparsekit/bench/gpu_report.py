"""Render a GPU suite document (``gpu_suite.json``, the source of truth) as markdown and PNG plots.

Runs on any CPU after the GPU run: ``python benchmarks/gpu_suite.py render RUN/gpu_suite.json
[--out DIR]`` writes ``summary.md``, ``e2e.png``, ``gemm.png`` and ``llm_gemm.png`` (and copies the JSON and log)
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
from sparsekit._lazy import lazy_import

matplotlib = lazy_import("matplotlib")
plt = lazy_import("matplotlib.pyplot")

# What the second GPU run is measured against (end to end: fp16 or bf16, some batch).
GOALS = {"e2e": 1.15, "selection_floor": 1.0, "llm_ffn_gemm": 1.4}
E2E_JOBS = ("bert-large-seq384", "bert-large-seq128", "compiled", "selection", "attention-matmul", "bf16", "batch-1")


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


def _e2e(row: dict) -> bool:
    return "max_rel_err_sparse_vs_dense" in row


def _ms(us) -> str:
    return f"{us / 1000:.2f}" if isinstance(us, (int, float)) else "-"


def time_split(row: dict) -> dict | None:
    """Milliseconds of one profiled forward per side: GEMMs, attention, layout copies, everything else.

    The 2:4 side's GEMMs are its 2:4 kernels plus the dense kernels of the layers that stayed dense.
    """
    k = row.get("kernels") or {}
    d, s = ((k.get("dense") or {}).get("family_us") or {}), ((k.get("sparse") or {}).get("family_us") or {})
    if not d or not s:
        return None
    out = {}
    for side, fam in (("dense", d), ("sparse", s)):
        gemm = fam.get("dense-gemm", 0.0) + fam.get("sparse-gemm", 0.0)
        out[side] = {"gemm": gemm, "attention": fam.get("attention", 0.0), "copy": fam.get("copy", 0.0), "other": fam.get("other", 0.0), "sparse_gemm": fam.get("sparse-gemm", 0.0)}
    return out


def explain(row: dict) -> str:
    """One line from the kernel profile: where the 2:4 side gained or lost time against dense."""
    t = time_split(row)
    if not t:
        return "no kernel profile recorded"
    d, s = t["dense"], t["sparse"]
    parts = [f"GEMMs {_ms(d['gemm'])} -> {_ms(s['gemm'])} ms"]
    for key, name in (("attention", "attention"), ("copy", "layout copies"), ("other", "other kernels")):
        if abs(s[key] - d[key]) >= 0.05 * max(d["gemm"], 1.0) or key == "copy" and s[key] > d[key]:
            parts.append(f"{name} {_ms(d[key])} -> {_ms(s[key])} ms")
    return "; ".join(parts)


def _rows_of(doc: dict, names) -> list[tuple[str, dict]]:
    return [(name, r) for name in names for r in _ok_units(_job(doc, name))]


def _dtype(doc: dict, name: str, row: dict) -> str:
    return row.get("dtype") or (((_job(doc, name) or {}).get("model") or {}).get("dtype")) or ("bfloat16" if name == "bf16" else "float16")


def _verdict(ratio: float, low: float, target: float) -> str:
    if low >= target:
        return "**met**"
    if ratio >= target:
        return f"met by the point estimate only (interval down to {low:.3f}x)"
    return "**not met**"


def goal_lines(doc: dict) -> list[str]:
    """The run against the goals: best end-to-end ratio, selection's floor, the LLM FFN GEMMs; each met or not, and why."""
    lines = ["| goal | measured | met? | where the time went (kernel profile) |", "|---|---|---|---|"]
    e2e = [(n, r) for n, r in _rows_of(doc, E2E_JOBS) if _e2e(r)]
    if e2e:
        name, best = max(e2e, key=lambda nr: nr[1]["speedup"]["ratio"])
        s = best["speedup"]
        where = f"{name} seq {best.get('seq')} batch {best['batch']} {_dtype(doc, name, best)}" + (f", {best['mode']}" if best.get("mode") else "")
        lines.append(f"| end to end >= {GOALS['e2e']}x at some batch (fp16 or bf16) | best {_ci(s)}: {where} ({len(e2e)} rows) | {_verdict(s['ratio'], s['low'], GOALS['e2e'])} | {explain(best)} |")
    else:
        lines.append(f"| end to end >= {GOALS['e2e']}x at some batch (fp16 or bf16) | no end-to-end row measured | no data | - |")
    sel = [r for _, r in _rows_of(doc, ("selection",)) if _e2e(r)]
    planned = sum(1 for u in (_job(doc, "selection") or {}).get("units", []) if u.get("label", "").startswith("seq "))
    if sel:
        worst = min(sel, key=lambda r: r["speedup"]["ratio"])
        below = [r for r in sel if r["speedup"]["high"] < GOALS["selection_floor"]]
        where = ", ".join(f"seq {r.get('seq')} batch {r['batch']}" for r in below)
        verdict = "**met**" if not below else f"**not met** at {where}"
        lines.append(f"| never below {GOALS['selection_floor']}x with selection, at any batch | worst {_ci(worst['speedup'])} (seq {worst.get('seq')} batch {worst['batch']}, {worst.get('selected_2to4')} layers 2:4); {len(sel)} of {planned} batches measured | {verdict} | {explain(worst)} |")
    else:
        lines.append(f"| never below {GOALS['selection_floor']}x with selection, at any batch | no selection-guided row measured | no data | - |")
    ffn = [r for _, r in _rows_of(doc, ("llm-gemm",)) if r.get("ffn") and r.get("phase") == "prefill"]
    if ffn:
        best = max(ffn, key=lambda r: r["speedup"]["ratio"])
        reached = sum(r["speedup"]["ratio"] >= GOALS["llm_ffn_gemm"] for r in ffn)
        top = next((x["name"] for x in ((best.get("kernels") or {}).get("sparse") or {}).get("kernels", []) if x["family"] == "sparse-gemm"), None)
        why = f"{best['dense_tflops']:.0f} dense vs {best['sparse_tflops']:.0f} 2:4 TFLOP/s" + (f", `{top[:60]}`" if top else "") + f", alg {best.get('alg_id')}"
        lines.append(f"| Llama-3-8B FFN GEMMs >= {GOALS['llm_ffn_gemm']}x (prefill) | best {_ci(best['speedup'])} ({best['shape']}, {best['dtype']}); {reached} of {len(ffn)} rows at or above | {_verdict(best['speedup']['ratio'], best['speedup']['low'], GOALS['llm_ffn_gemm'])} | {why} |")
    else:
        lines.append(f"| Llama-3-8B FFN GEMMs >= {GOALS['llm_ffn_gemm']}x (prefill) | no LLM GEMM row measured | no data | - |")
    return lines


def compiled_rows(doc: dict) -> list[str]:
    job = _job(doc, "compiled") or {}
    mode = job.get("mode") or (job.get("result") or {}).get("compile") or {}
    lines = [f"Mode that ran: **{mode.get('mode', 'not recorded')}**" + (f". Fallback: {mode['fallback']}" if mode.get("fallback") else "")
             + (f". Compile seconds {mode.get('compile_seconds')}, graph breaks {mode.get('graph_breaks')}." if mode.get("compiled") else ""), "",
             "| seq | batch | dense ms (p99) | 2:4 ms (p99) | speedup [95% CI] | Amdahl bound | GEMM kernels dense / 2:4 | max rel err | timing | where the time went |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for r in _ok_units(job):
        d, s = r["dense"], r["sparse"]
        lines.append(f"| {r.get('seq')} | {r['batch']} | {d['median']:.3f} ({d['p99']:.3f}) | {s['median']:.3f} ({s['p99']:.3f}) | {_ci(r['speedup'])} | {r.get('amdahl_bound', float('nan')):.2f}x | "
                     f"{gemm_kernel_ratio(r)} | {r['max_rel_err_sparse_vs_dense']:.1e} | {r['timing']} | {explain(r)} |")
    return lines


def selection_rows(doc: dict) -> list[str]:
    job = _job(doc, "selection") or {}
    lines = ["| seq | batch | layers 2:4 / dense | 2:4 layers | dense layers | speedup [95% CI] | Amdahl bound (selected) | all-2:4 bound | GEMM kernels dense / 2:4 | where the time went |",
             "|---:|---:|---|---|---|---|---:|---:|---:|---|"]
    for r in _ok_units(job):
        sparse = ", ".join(f"{k} x{v}" for k, v in (r.get("sparse_groups") or {}).items()) or "none"
        dense = ", ".join(f"{k} x{v}" for k, v in (r.get("dense_groups") or {}).items()) or "none"
        lines.append(f"| {r.get('seq')} | {r['batch']} | {r.get('selected_2to4')} / {r.get('kept_dense')} | {sparse} | {dense} | {_ci(r['speedup'])} | {r.get('amdahl_bound', 1.0):.2f}x | "
                     f"{r.get('full_2to4_amdahl_bound', float('nan')):.2f}x | {gemm_kernel_ratio(r)} | {explain(r)} |")
    reasons = [u["result"] for u in job.get("units", []) if u.get("status") == "ok" and isinstance(u.get("result"), dict) and "dense_reasons" in u["result"]]
    for c in reasons:
        for pattern, why in c["dense_reasons"].items():
            lines.append(f"\n- seq {c['seq']} batch {c['batch']}: `{pattern}` stayed dense: {why}")
    return lines


def llm_rows(doc: dict) -> list[str]:
    lines = ["| layers | phase | dtype | M | K | N | dense us | 2:4 us | speedup [95% CI] | dense / 2:4 TFLOP/s | alg | sparse kernel |", "|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for r in _ok_units(_job(doc, "llm-gemm")):
        k = (r.get("kernels") or {}).get("sparse") or {}
        top = next((x["name"] for x in k.get("kernels", []) if x["family"] == "sparse-gemm"), "-")
        lines.append(f"| {'/'.join(r.get('layers', []))} | {r.get('phase')} | {r['dtype']} | {r['m']} | {r['k']} | {r['n']} | {1000 * r['dense']['median']:.1f} | {1000 * r['sparse']['median']:.1f} | "
                     f"{_ci(r['speedup'])} | {r['dense_tflops']:.0f} / {r['sparse_tflops']:.0f} | {r.get('alg_id')} | `{top[:60]}` |")
    return lines


def fp8_lines(doc: dict) -> list[str]:
    job = _job(doc, "fp8")
    if not job:
        return ["FP8 job not in this run."]
    result = job.get("result") or {}
    if result.get("refused"):
        return [f"**FP8 2:4 refused** by torch {result.get('torch')}: {result['refused']}"]
    rows = _ok_units(job)
    if not rows:
        why = job.get("reason") or "; ".join(u.get("reason", "") for u in job.get("units", []) if u.get("reason")) or job.get("status")
        return [f"No FP8 row measured ({why})."]
    lines = ["| shape | M | K | N | FP8 dense us | FP8 2:4 us | speedup [95% CI] | dense / 2:4 TFLOP/s | max rel err dense / 2:4 | alg |", "|---|---:|---:|---:|---:|---:|---|---|---|---:|"]
    for r in rows:
        lines.append(f"| {re.sub(r', M=[0-9]+', '', r['shape'])} | {r['m']} | {r['k']} | {r['n']} | {1000 * r['dense']['median']:.1f} | {1000 * r['sparse']['median']:.1f} | {_ci(r['speedup'])} | "
                     f"{r['dense_tflops']:.0f} / {r['sparse_tflops']:.0f} | {r['max_rel_err_dense']:.1e} / {r['max_rel_err']:.1e} | {r.get('alg_id')} |")
    return lines + ["", f"Layout: {rows[0].get('layout', '')}"]


def profile_rows(doc: dict) -> list[str]:
    """Where the time goes in one profiled forward, per end-to-end row: GEMMs, attention, layout copies, the rest."""
    lines = ["| job | seq | batch | GEMMs ms dense / 2:4 (of which 2:4 kernels) | attention ms | layout copies ms | other ms | total ms |", "|---|---:|---:|---|---|---|---|---|"]
    for name, r in _rows_of(doc, E2E_JOBS):
        t = time_split(r) if _e2e(r) else None
        if not t:
            continue
        d, s = t["dense"], t["sparse"]
        total = {side: sum(v for k, v in t[side].items() if k != "sparse_gemm") for side in ("dense", "sparse")}
        lines.append(f"| {name} | {r.get('seq')} | {r['batch']} | {_ms(d['gemm'])} / {_ms(s['gemm'])} ({_ms(s['sparse_gemm'])}) | {_ms(d['attention'])} / {_ms(s['attention'])} | "
                     f"{_ms(d['copy'])} / {_ms(s['copy'])} | {_ms(d['other'])} / {_ms(s['other'])} | {_ms(total['dense'])} / {_ms(total['sparse'])} |")
    return lines


def status_lines(doc: dict) -> list[str]:
    lines = ["| job | status | seconds | units ok / skipped / failed | of them no GPU (dense only, or skipped) |", "|---|---|---:|---|---:|"]
    for j in doc.get("jobs", []):
        units = j.get("units", [])
        count = {st: sum(u.get("status") == st for u in units) for st in ("ok", "skipped", "failed")}
        no_gpu = sum(1 for u in units if isinstance(u.get("result"), dict) and u["result"].get("no_gpu") or str(u.get("reason", "")).startswith("no GPU"))
        lines.append(f"| {j['name']} | {j['status']} | {j.get('seconds', 0):.1f} | {count['ok']} / {count['skipped']} / {count['failed']} | {no_gpu} |")
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
    dry_line = (f"**DRY RUN without a GPU** ({doc.get('dry_run')}): the rows below time dense work on the CPU at tiny shapes and say nothing about 2:4; "
                "only the orchestration, the files and this rendering are checked.")
    dry = [dry_line, ""] if doc.get("dry_run") else []
    lines = [
        f"# GPU suite: dense vs 2:4 on {facts.get('device', 'unknown GPU')}",
        "",
        *dry,
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
        "## Goals",
        "",
        *goal_lines(doc),
        "",
        "## End to end: BERT-large-shaped encoder (24 x 1024, FFN 4096), eager (each forward one CUDA graph)",
        "",
        *model_rows(doc, ["bert-large-seq384", "bert-large-seq128", "attention-matmul", "bf16", "batch-1"]),
        "",
        "## End to end, compiled: both sides through the same torch.compile mode",
        "",
        *compiled_rows(doc),
        "",
        "## End to end, selection-guided: only the layers `select` measures as winning at that batch run 2:4",
        "",
        *selection_rows(doc),
        "",
        "## Where the time goes (one profiled forward per row; dense / 2:4)",
        "",
        *profile_rows(doc),
        "",
        "## GEMMs (transformer layer shapes)",
        "",
        *gemm_rows(doc, ["gemm", "gemm-large", "bf16"]),
        "",
        "## Llama-3-8B GEMMs (cuSPARSELt algorithm search)",
        "",
        *llm_rows(doc),
        "",
        "## FP8 (e4m3) 2:4 vs FP8 dense (exploratory)",
        "",
        *fp8_lines(doc),
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


def _plot_setup():
    matplotlib.use("Agg")
    return plt


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def e2e_series(doc: dict) -> list[tuple[str, list[dict]]]:
    """(label, rows sorted by batch) per job and sequence length, fp16 SDPA end-to-end rows only."""
    series = []
    for name in ("bert-large-seq384", "bert-large-seq128", "compiled", "selection"):
        rows = [r for r in _ok_units(_job(doc, name)) if _e2e(r)]
        for seq in sorted({r.get("seq") for r in rows}, reverse=True):
            picked = sorted((r for r in rows if r.get("seq") == seq), key=lambda r: r["batch"])
            label = name if name.startswith("bert-large") else f"{name} seq {seq}"
            series.append((label, picked))
    return series


def plot_e2e(doc: dict, path: Path) -> Path | None:
    """Speedup vs batch per job and sequence length, with intervals, the Amdahl bounds and the goals."""
    series = e2e_series(doc)
    if not series:
        return None
    plt = _plot_setup()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    colours = plt.get_cmap("tab10").colors
    for i, (name, rows) in enumerate(series):
        colour = colours[i % len(colours)]
        b = [r["batch"] for r in rows]
        ratio = [r["speedup"]["ratio"] for r in rows]
        err = [[r["speedup"]["ratio"] - r["speedup"]["low"] for r in rows], [r["speedup"]["high"] - r["speedup"]["ratio"] for r in rows]]
        ax.errorbar(b, ratio, yerr=err, fmt="o-", capsize=4, color=colour, label=f"{name} (95% CI)")
        if name.startswith("bert-large"):
            ax.axhline(rows[0].get("amdahl_bound", 2.0), color=colour, ls=":", lw=1, label=f"{name} Amdahl bound {rows[0].get('amdahl_bound', 2.0):.2f}x")
    ax.axhline(GOALS["selection_floor"], color="grey", ls="--", lw=1, label="dense (1.0x; selection's floor)")
    ax.axhline(GOALS["e2e"], color="tab:green", ls="-.", lw=1, label=f"goal {GOALS['e2e']}x")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("dense / 2:4 latency")
    ax.set_title("BERT-large-shaped encoder, fp16, PyTorch 2:4 kernels")
    ax.set_ylim(0, 2.2)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return _save(fig, plt, path)


def _bars(rows: list[dict], labels: list[str], goal: float, path: Path) -> Path:
    plt = _plot_setup()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    ratio = [r["speedup"]["ratio"] for r in rows]
    err = [[r["speedup"]["ratio"] - r["speedup"]["low"] for r in rows], [r["speedup"]["high"] - r["speedup"]["ratio"] for r in rows]]
    ax.barh(range(len(rows)), ratio, xerr=err, color="tab:blue", capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.axvline(goal, color="tab:green", ls="-.", lw=1, label=f"goal {goal}x")
    ax.axvline(2.0, color="tab:red", ls=":", lw=1, label="2:4 math limit 2x")
    ax.invert_yaxis()
    ax.set_xlabel("dense / 2:4 time per GEMM")
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def plot_gemm(doc: dict, path: Path) -> Path | None:
    """Horizontal bars: BERT GEMM speedups with intervals, against the 2x limit and the LLM FFN goal."""
    rows = [r for name in ("gemm", "gemm-large", "bf16") for r in _ok_units(_job(doc, name)) if "k" in r]
    if not rows:
        return None
    return _bars(rows, [f"{r['shape']} {r.get('dtype', 'float16')}" for r in rows], GOALS["llm_ffn_gemm"], path)


def plot_llm(doc: dict, path: Path) -> Path | None:
    """Horizontal bars: Llama-3-8B GEMM speedups (prefill and decode, fp16 and bf16) against the goal."""
    rows = [r for r in _ok_units(_job(doc, "llm-gemm")) if "k" in r]
    if not rows:
        return None
    return _bars(rows, [f"{'/'.join(r.get('layers', []))} {r.get('phase')} M={r['m']} {r['dtype']}" for r in rows], GOALS["llm_ffn_gemm"], path)


def render(doc_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``summary.md``, ``e2e.png``, ``gemm.png``, ``llm_gemm.png`` (plots with data) and copies of the JSON and log into ``out``."""
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
    plot_llm(doc, out / "llm_gemm.png")
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
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        print(f"render: '{path}' is not a GPU suite document ({type(exc).__name__}: {exc}) (fix: give the gpu_suite.json the GPU run wrote)", file=sys.stderr)
        return 2
    print(f"rendered into {out}")
    return 0
