"""What a run did to the task's metric: dense vs one-shot 2:4 vs recovered vs INT8, as rows (each
with the primary metric, its 95% interval, the paired difference to dense, fidelity, steps and
minutes) and as ``summary.png`` (the metric per fine-tuning epoch, or the rows as bars).

Read from the run folder: ``finetune.json`` (the finetune stage: dense teacher, the model as
loaded, after training, epoch metrics) and ``int8.eval.json`` (the INT8 evaluation stage: the
exported model quantized as the INT8 export quantizes it, PTQ, evaluated on the task).
"""

from __future__ import annotations

from pathlib import Path

FIDELITY = ("agreement", "kl", "cosine", "ppl_ratio")
"""Metrics that measure closeness to the dense model (shown next to the primary metric)."""


def _row(name: str, metrics: dict | None, primary: str, steps: int | None = None, seconds: float | None = None, int8: bool = False) -> dict | None:
    """One row of :func:`result_rows`, or None when ``metrics`` lacks the primary metric."""
    if not metrics or primary not in metrics:
        return None
    paired = f"{primary}_vs_dense"
    return {
        "name": name, "int8": int8, "metric": metrics[primary], "low": metrics.get(f"{primary}_low"), "high": metrics.get(f"{primary}_high"),
        "vs_dense": [metrics[paired], metrics.get(f"{paired}_low"), metrics.get(f"{paired}_high")] if paired in metrics else None,
        "fidelity": {k: metrics[k] for k in FIDELITY if k in metrics and k != primary},
        "steps": steps, "minutes": None if seconds is None else round(seconds / 60, 3),
    }


def result_rows(finetune: dict | None, int8: dict | None, sparsify: dict | None = None) -> dict | None:
    """``{"primary", "rows", "epochs"}`` of a run, or None when it evaluated nothing.

    Rows, in order and where the run has them: ``dense`` (the finetune teacher's metrics, else the
    INT8 stage's dense evaluation), ``one-shot 2:4`` (the model as it came to fine-tuning),
    ``recovered`` (after fine-tuning; ``recovered, INT8 QAT`` when it was quantized), ``INT8 PTQ``.
    ``epochs``: the primary metric after each fine-tuning epoch (empty without ``eval_each_epoch``).
    """
    primary = (finetune or {}).get("primary") or (int8 or {}).get("primary")
    if not primary:
        return None
    tune = finetune or {}
    report = tune.get("report") or {}
    qat = tune.get("quantize") == "int8"
    sparsify_seconds = (sparsify or {}).get("seconds")
    rows = [
        _row("dense", tune.get("dense") or (int8 or {}).get("dense"), primary),
        _row("one-shot 2:4", tune.get("before") or (None if finetune else (int8 or {}).get("float")), primary, seconds=sparsify_seconds),
        _row("recovered, INT8 QAT" if qat else "recovered", tune.get("metrics"), primary, report.get("steps"), report.get("seconds"), int8=qat),
        _row("INT8 PTQ", (int8 or {}).get("metrics"), primary, seconds=(int8 or {}).get("seconds"), int8=True) if not qat else None,
    ]
    epochs = [m[primary] for m in report.get("epoch_metrics") or [] if isinstance(m, dict) and primary in m]
    return {"primary": primary, "rows": [r for r in rows if r is not None], "epochs": epochs}


def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def results_markdown(results: dict) -> list[str]:
    """The rows as a markdown table (with a heading)."""
    p = results["primary"]
    lines = ["## Results", "", f"| model | {p} [95% interval] | vs dense (paired, 95%) | fidelity to dense | steps | minutes |", "|---|---|---|---|---:|---:|"]
    for r in results["rows"]:
        value = _num(r["metric"]) + (f" [{_num(r['low'])}, {_num(r['high'])}]" if r["low"] is not None and r["high"] is not None else "")
        vs = "-" if r["vs_dense"] is None else f"{r['vs_dense'][0]:+.2f}" + (f" [{r['vs_dense'][1]:+.2f}, {r['vs_dense'][2]:+.2f}]" if r["vs_dense"][1] is not None else "")
        fid = ", ".join(f"{k} {v:.3f}" if k in ("kl", "ppl_ratio") else f"{k} {v:.2f}" for k, v in r["fidelity"].items()) or "-"
        lines.append(f"| {r['name']} | {value} | {vs} | {fid} | {_num(r['steps'], 'd')} | {_num(r['minutes'])} |")
    if results["epochs"]:
        lines += ["", f"{p} after each fine-tuning epoch: " + ", ".join(f"{v:.2f}" for v in results["epochs"]) + " (summary.png)."]
    else:
        lines += ["", "summary.png shows the rows as bars (set `eval_each_epoch: true` in `finetune:` for the metric per epoch)."]
    return lines


def plot_results(results: dict, path: Path, title: str = "") -> None:
    """``summary.png``: the primary metric per fine-tuning epoch (one-shot at epoch 0, INT8 PTQ as
    a star after the last) or, without epoch metrics, the rows as bars with their 95% intervals;
    dense as a dashed line in both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    primary, rows, epochs = results["primary"], {r["name"]: r for r in results["rows"]}, results["epochs"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if epochs:
        xs, ys = list(range(1, len(epochs) + 1)), list(epochs)
        if "one-shot 2:4" in rows:
            xs, ys = [0, *xs], [rows["one-shot 2:4"]["metric"], *ys]
        ax.plot(xs, ys, marker="o", color="#76b900", label="2:4: one-shot (epoch 0), then fine-tuned")
        if "INT8 PTQ" in rows:
            ax.scatter([len(epochs)], [rows["INT8 PTQ"]["metric"]], marker="*", s=160, color="#d62728", zorder=3, label="INT8 PTQ")
        ax.set_xlabel("fine-tuning epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    else:
        shown = [r for r in results["rows"] if r["name"] != "dense"]
        heights = [r["metric"] for r in shown]
        errors = [[r["metric"] - r["low"] if r["low"] is not None else 0 for r in shown], [r["high"] - r["metric"] if r["high"] is not None else 0 for r in shown]]
        ax.bar(range(len(shown)), heights, yerr=errors, color=["#d62728" if r["int8"] else "#76b900" for r in shown], capsize=4)
        ax.set_xticks(range(len(shown)), [r["name"] for r in shown])
    if "dense" in rows:
        ax.axhline(rows["dense"]["metric"], color="#555", linestyle="--", linewidth=1, label="dense")
    ax.set_ylabel(primary)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"{primary}: dense vs 2:4")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
