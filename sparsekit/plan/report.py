"""``plan.json``, ``plan.md`` and ``plan.png``: the frontier, the chosen include list, the evidence."""

from __future__ import annotations

from pathlib import Path

from sparsekit._io import atomic_path, write_json_atomic, write_text_atomic

FILES = ("plan.json", "plan.md", "plan.png")


def _ci(d: dict | None) -> str:
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" if d else ""


def render_markdown(plan: dict) -> str:
    """The plan as a Markdown page (``plan`` is :meth:`PlanReport.to_dict`)."""
    primary, cfg = plan["primary"], plan["config"]
    speed = "the ideal 2x for every 2:4 GEMM" if plan["speed_source"] == "ideal" else f"GEMM ratios measured in `{plan['speed_source']}` (per layer: measured, interpolated in M, or the nearest measured shape; see the layer table)"
    chosen = plan["points"][plan["chosen"]]
    lines = [
        f"# 2:4 plan on task {plan['task']}: accuracy and speed together", "",
        f"Dense {primary}: {plan['dense'][primary]:.2f}. Method {cfg['method']}; deployment batch {cfg['batch']} ({cfg['dtype']}); expected speed from {speed}. "
        f"Layers are ranked by the {plan['rank_by']} they lose alone per unit of model time they save.", "",
        f"**Chosen** (fastest within {cfg['max_drop']} of dense {primary}): {len(chosen['sparse'])} layers 2:4, expected {chosen['speedup']:.2f}x "
        f"(ideal {chosen['speedup_ideal']:.2f}x); `include` in plan.json (`sparsekit sparsify --include-from plan.json`).", "",
    ]
    splits = sorted({s for p in plan["points"] for s in p["robustness"]})
    second = next((m for m in ("fidelity", "agreement") if any(m in p["metrics"] for p in plan["points"])), None)
    stages = [k for k in ("reconstructed", "distilled") if any(p.get(k) for p in plan["points"])] or ["distilled"]
    head = ["#", "step", "2:4 layers", "expected speedup", "ideal bound", f"{primary} one-shot", "vs dense [95% CI]", second or ""] + [x for k in stages for x in (k, f"{k} vs dense [95% CI]")] + [f"{s} vs dense" for s in splits] + ["frontier"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, p in enumerate(plan["points"]):
        fid = p["metrics"].get(second) if second else None
        recovered = [p.get(k) or {} for k in stages]
        robust = [_ci(p["robustness"].get(s, {}).get("diff")) + (f" ({model})" if (model := p["robustness"].get(s, {}).get("model", "one-shot")) != "one-shot" else "") for s in splits]
        mark = ("**chosen** " if i == plan["chosen"] else "") + ("yes" if p["frontier"] else "")
        cells = [str(i), p["step"], str(len(p["sparse"])), f"{p['speedup']:.3f}x", f"{p['speedup_ideal']:.3f}x", f"{p['metrics'][primary]:.2f}", _ci(p["diff"]), (f"{fid:.3f}" if second == "fidelity" else f"{fid:.1f}") if isinstance(fid, float) else ""]
        cells += [x for r in recovered for x in (f"{r['metrics'][primary]:.2f}" if r else "", _ci(r.get("diff")))] + robust + [mark]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{plan['evaluations']} one-shot evaluations, {plan['seconds'] / 60:.1f} min in all.", ""]
    if plan["never"]:
        lines += [f"Kept dense at every point (their 2:4 GEMM saves no time at this batch): {', '.join(plan['never'])}.", ""]
    lines += ["Layers, in the order they go back to dense:", "", f"| layer | FLOP share | GEMM MxKxN | 2:4/dense ratio | from | {plan['rank_by']} lost alone | lost per time saved |", "|---|---|---|---|---|---|---|"]
    trades = {t["name"]: t for t in plan["trades"]}
    for name in plan["order"] + plan["never"]:
        t = trades[name]
        per = f"{t['cost_per_time']:.2f}" if t["cost_per_time"] is not None else "never 2:4"
        cost = "not measured" if t["cost"] is None else f"{t['cost']:.3f}"
        lines.append(f"| {name} | {t['flop_share']:.4f} | {'x'.join(map(str, t['gemm']))} | {t['speed']['ratio']:.2f} | {t['speed']['how']} | {cost} | {per} |")
    unmeasured = [t for t in plan["trades"] if t["speed"]["how"].startswith("nearest shape")]
    if unmeasured:
        lines += ["", f"{len(unmeasured)} of {len(plan['trades'])} layers run a GEMM shape the table did not measure: their ratio is the nearest measured shape's, "
                  "a guess (smaller GEMMs usually gain less from 2:4); measure this model's shapes with 'sparsekit select' on the target GPU and pass that file as --speed."]
    if plan["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in plan["notes"]]
    lines += ["", "Expected speedup: each layer's share of the model's time is its share of the FLOPs; a 2:4 layer takes 1/ratio of it (Amdahl). Memory-bound work outside the FLOPs makes the measured gain smaller: benchmark the chosen point."]
    return "\n".join(lines) + "\n"


RECOVERY_MARKS = (("reconstructed", "s", "#9467bd", "after block reconstruction"), ("distilled", "D", "#1f77b4", "after distillation"))
"""How the plots draw a recovered point: (stage, marker, colour, legend label)."""


def draw_recovered(ax, plan: dict, key: str, chosen_label: str) -> None:
    """On ``ax`` (x: the points' ``key`` speedup, y: the primary metric): an arrow from each
    recovered point's one-shot metric to its metric after reconstruction / distillation, and the
    chosen point starred at the metric of the model it stands for."""
    primary, points = plan["primary"], plan["points"]
    for stage, marker, color, label in RECOVERY_MARKS:
        for p in points:
            if p.get(stage):
                y = p[stage]["metrics"][primary]
                ax.annotate("", xy=(p[key], y), xytext=(p[key], p["metrics"][primary]), arrowprops={"arrowstyle": "->", "color": color})
                ax.scatter([p[key]], [y], marker=marker, color=color, s=36, zorder=4)
        if any(p.get(stage) for p in points):
            ax.scatter([], [], marker=marker, color=color, label=label)
    c = points[plan["chosen"]]
    ax.scatter([c[key]], [(c.get(c.get("best", "one-shot")) or c)["metrics"][primary]], marker="*", color="#d62728", s=180, zorder=5, label=chosen_label)


def plot(plan: dict, path: Path, title: str = "") -> None:
    """Primary metric vs expected speedup (left: the plan's speed table; right, when measured: the
    ideal 2x), frontier joined, distilled points as diamonds, reconstructed ones as squares, the chosen
    point starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary, points = plan["primary"], plan["points"]
    keys = [("speedup", "expected speedup (" + ("ideal 2x" if plan["speed_source"] == "ideal" else "measured GEMM ratios") + ")")]
    if plan["speed_source"] != "ideal":
        keys.append(("speedup_ideal", "ideal bound (every 2:4 GEMM 2x)"))
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.6), squeeze=False)
    dense = plan["dense"][primary]
    for ax, (key, label) in zip(axes[0], keys):
        xs = [p[key] for p in points]
        ys = [p["metrics"][primary] for p in points]
        ax.scatter(xs, ys, color="#999", s=18, label="one-shot", zorder=2)
        front = sorted((p[key], p["metrics"][primary]) for p in points if p["frontier"])
        ax.plot([f[0] for f in front], [f[1] for f in front], color="#76b900", linewidth=2, label="frontier (one-shot)", zorder=3)
        draw_recovered(ax, plan, key, "chosen")
        ax.axhline(dense, color="#555", linestyle="--", linewidth=1, label="dense")
        ax.axhspan(dense - plan["config"]["max_drop"], dense, color="#76b900", alpha=0.08, label=f"within {plan['config']['max_drop']} of dense")
        ax.set_xlabel(label)
        ax.set_ylabel(primary)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title or f"2:4 plan, task {plan['task']}: {primary} vs expected speedup")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_plan(plan: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``plan.json``, ``plan.md`` and ``plan.png`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(out / "plan.json", plan), "md": write_text_atomic(out / "plan.md", render_markdown(plan))}
    with atomic_path(out / "plan.png") as tmp:
        plot(plan, tmp)
    paths["png"] = out / "plan.png"
    return paths
