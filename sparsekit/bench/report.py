"""Render a benchmark result (the JSON is the source of truth) as markdown and PNG plots."""

from __future__ import annotations

from pathlib import Path

from sparsekit._io import atomic_path, write_json_atomic, write_text_atomic
from sparsekit._lazy import lazy_import

matplotlib = lazy_import("matplotlib")
plt = lazy_import("matplotlib.pyplot")


def render_markdown(r: dict) -> str:
    """Table per batch: dense/sparse median and p99, speedup with interval, next to the evidence."""
    m, s = r["machine"], r["settings"]
    gpu = (m.get("gpus") or [{}])[0]
    device = f"{gpu.get('name')} (CC {gpu.get('compute_capability')}, driver {gpu.get('driver')}, SM clock {gpu.get('sm_clock_mhz')} MHz)" if gpu else f"{m['cpu']} ({m['cores']} cores)"
    lines = [
        f"# {r['backend']}: dense vs 2:4 sparse, {Path(str(r['model'])).name} ({r['precision']})",
        "",
        f"Device: {device}. Date: {r['date']}.",
        f"Method: warm-up {s['warmup_seconds']} s, {s['rounds']} interleaved rounds of >= {s['min_iters']} calls and >= {s['round_seconds']} s per side, "
        f"{s['buffers']} rotated random input buffers, timer {s['timer']}, CUDA graphs {s.get('graphs')}, transfers {s.get('transfers')}; "
        f"speedup = median over rounds of dense/sparse round medians, {int(100 * s['level'])}% bootstrap interval over rounds.",
        "",
        f"Amdahl bound from the layers that are 2:4 ({100 * r['amdahl']['sparse_flop_share']:.1f}% of FLOPs): **{r['amdahl']['bound']:.2f}x**.",
    ]
    ev = r.get("evidence", {})
    if "sparse" in ev:
        e = ev["sparse"]
        lines.append(f"Sparse build evidence: {e['onnx_2to4']} layers 2:4 in the ONNX, {e['eligible']} eligible, sparse kernels in {e['sparse_kernel']} ({100 * e['sparse_kernel_flop_share']:.1f}% of FLOPs).")
    if "converted_linear_layers" in ev:
        lines.append(f"Converted to semi-structured sparse: {ev['converted_linear_layers']} Linear layers; not converted: {len(ev['not_converted'])}.")
    lines += ["", "| batch | dense median ms | dense p99 | sparse median ms | sparse p99 | speedup (CI) | CoV dense / sparse | throughput sparse (/s) |", "|---:|---:|---:|---:|---:|---|---|---:|"]
    for row in r["results"]:
        d, sp, ci = row["dense"], row["sparse"], row["speedup"]
        flag = " (unstable)" if d["unstable"] or sp["unstable"] else ""
        lines.append(f"| {row['batch']} | {d['median']:.3f} | {d['p99']:.3f} | {sp['median']:.3f} | {sp['p99']:.3f} | **{ci['ratio']:.3f}x** ({ci['low']:.3f}-{ci['high']:.3f}) | {100 * d['cov']:.1f}% / {100 * sp['cov']:.1f}%{flag} | {sp['throughput']:.1f} |")
    mem = r.get("memory", {})
    if mem:
        lines += ["", "Memory: " + ", ".join(f"{k} = {v}" for k, v in mem.items() if not isinstance(v, dict))]
    for note in r.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def plot_png(r: dict, path: Path) -> Path:
    """Latency vs batch (median, p90-p99 band) and speedup vs batch (with interval and Amdahl bound)."""
    matplotlib.use("Agg")
    rows = r["results"]
    batches = [row["batch"] for row in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for side, colour in (("dense", "tab:blue"), ("sparse", "tab:orange")):
        med = [row[side]["median"] for row in rows]
        ax1.plot(batches, med, "o-", color=colour, label=f"{side} median")
        ax1.fill_between(batches, [row[side]["p90"] for row in rows], [row[side]["p99"] for row in rows], color=colour, alpha=0.2, label=f"{side} p90-p99")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("batch")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title("latency")
    ax1.legend(fontsize=8)
    ratio = [row["speedup"]["ratio"] for row in rows]
    lo = [row["speedup"]["ratio"] - row["speedup"]["low"] for row in rows]
    hi = [row["speedup"]["high"] - row["speedup"]["ratio"] for row in rows]
    ax2.errorbar(batches, ratio, yerr=[lo, hi], fmt="o-", color="tab:green", capsize=4, label="measured (CI)")
    ax2.axhline(1.0, color="grey", lw=1, ls="--", label="no gain")
    ax2.axhline(r["amdahl"]["bound"], color="tab:red", lw=1, ls=":", label=f"Amdahl bound {r['amdahl']['bound']:.2f}x")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("batch")
    ax2.set_ylabel("dense / sparse latency")
    ax2.set_title("speedup")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{r['backend']}: {Path(str(r['model'])).name} ({r['precision']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_result(r: dict, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.json`` (source of truth), ``<stem>.md`` and ``<stem>.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_json_atomic(paths["json"], r)
    write_text_atomic(paths["md"], render_markdown(r))
    plot_png(r, paths["png"])
    return paths
