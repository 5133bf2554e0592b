"""The accuracy/speed frontier of ``sparsekit plan`` on the kit's own tasks, with expected speed from
the committed H200 GEMM table and from the ideal 2x, side by side.

Models:
- ``docstrings``: the pretrained all-MiniLM-L6-v2 encoder, 2,000 ``eval_large`` pairs (recall@1,
  fidelity), calibrated and distilled on the broad text, frontier points also on ``heldout`` and
  ``ood``; layers ranked by the fidelity they lose alone (recall@1 on 2,000 pairs moves in steps of
  0.05 points and is noisy for one layer); deployment batch 32 x 128 tokens (GEMM M = 4,096).
- ``digits32``: the zoo CNN trained here on the digits upsampled to 32x32 (as in the accuracy
  table), batch 32.

Both plans of a model (measured table, ideal 2x) share one cache of evaluations: a layer set
evaluated for one is not evaluated again for the other.

Usage: python benchmarks/plan.py [--models digits32 docstrings] [--out benchmarks/results] [--update]
Results: ``<out>/plan.{json,md,png}``, rewritten after each model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
H200_TABLE = HERE / "results" / "nvidia-h200" / "gpu_suite.json"

MODELS = {
    "docstrings": {"task_args": {"eval_split": "eval_large", "corpus": "broad"}, "splits": ("heldout", "ood"),
                   "config": {"method": "sparsegpt", "calib_samples": 200, "batch": 32, "rank_by": "fidelity", "max_drop": 1.0, "points": 10, "distill_points": 2, "distill_epochs": 1, "lr": 3e-4, "batch_size": 32, "features": True}},
    "digits32": {"task": "digits", "task_args": {"image_size": 32}, "dense_epochs": 6, "dense_lr": 3e-3, "splits": (),
                 "config": {"method": "sparsegpt", "calib_samples": 256, "batch": 32, "max_drop": 1.0, "points": 0, "distill_points": 2, "distill_epochs": 2, "lr": 1e-3, "batch_size": 64}},
}


def run_model(name: str, log) -> dict:
    import torch

    from sparsekit.models.source import load_model
    from sparsekit.plan.config import PlanConfig
    from sparsekit.plan.planner import plan_sparsity
    from sparsekit.plan.speed_table import load_speed_table
    from sparsekit.recover.finetune import TrainingConfig
    from sparsekit.recover.task_finetune import finetune_on_task_
    from sparsekit.tasks import get_task

    spec = MODELS[name]
    torch.manual_seed(0)
    task = get_task(spec.get("task", name), **spec["task_args"])
    extra = {split: get_task(task.name, **{**spec["task_args"], "eval_split": split}) for split in spec["splits"]}
    loaded = load_model(task.model[0], task.model[1])
    t0 = time.perf_counter()
    if spec.get("dense_epochs"):
        loaded.model, _ = finetune_on_task_(loaded.model, task, TrainingConfig(epochs=spec["dense_epochs"], lr=spec["dense_lr"], weight_decay=1e-4, warmup=0.05), 64)
    dense_seconds = time.perf_counter() - t0
    config = PlanConfig(**spec["config"])
    cache: dict = {}
    plans = {}
    for label, table in (("h200", load_speed_table(H200_TABLE)), ("ideal", None)):
        plans[label] = plan_sparsity(loaded, task, config, table, extra, progress=lambda m, label=label: log(f"[{name} {label}] {m}"), cache=cache).to_dict()
        if table is not None:
            plans[label]["speed_source"] = str(H200_TABLE.relative_to(HERE.parent))  # the repository's path, not this machine's
        log(f"[{name} {label}] done in {plans[label]['seconds'] / 60:.1f} min")
    return {"task": name, "description": task.description, "dense_training_seconds": round(dense_seconds, 1), "plans": plans}


def targets(result: dict) -> list[tuple[str, bool, str]]:
    """The plan targets for MiniLM (the docstrings task)."""
    if result["task"] != "docstrings":
        return []
    plan = result["plans"]["ideal"]
    out = []
    within = [p for p in plan["points"] if _loss(p) <= 1.0 and p["sparse"]]
    fastest = max(within, key=lambda p: p["speedup_ideal"], default=None)
    out.append(("a frontier point within 1 point of dense recall@1 with an ideal Amdahl bound of at least 1.6x", bool(fastest and fastest["speedup_ideal"] >= 1.6),
                f"fastest within 1 point: {fastest['speedup_ideal']:.2f}x ideal, {-_loss(fastest):+.2f} points" if fastest else "no 2:4 point within 1 point"))
    return out


def _loss(p: dict) -> float:
    from sparsekit.plan.planner import best_of

    d = best_of(p.get("diff"), ("reconstructed", p.get("reconstructed")), ("distilled", p.get("distilled")))[1]
    return -d["diff"] if d else 0.0


def render_markdown(report: dict) -> str:
    from sparsekit.bench.machine import machine_line
    from sparsekit.plan.report import render_markdown as plan_markdown

    m = report["machine"]
    lines = ["# 2:4 plans: accuracy and expected speed together", "",
             machine_line(m, ('torch', 'nvidia-modelopt')) + " CPU only (accuracy); speed is expected, not measured here.",
             f"Measured speed table: `{H200_TABLE.relative_to(HERE.parent)}` (H200 GEMMs of BERT shapes, fp16). Each model's two plans share their evaluations.", ""]
    for result in report["results"]:
        lines += [f"## {result['task']}: {result['description']}", "", f"Command: `{result.get('command', report['command'])}` ({result.get('seconds', 0) / 60:.1f} min).", ""]
        for label, title in (("ideal", "Expected speed from the ideal 2x (the Amdahl bound)"), ("h200", "Expected speed from the H200 GEMM table")):
            body = plan_markdown(result["plans"][label]).split("\n", 2)[2]
            lines += [f"### {title}", "", body.replace("\n## ", "\n#### "), ""]
        tg = targets(result)
        if tg:
            lines += ["Targets:", ""] + [f"- {'MET' if ok else 'MISSED'}: {text} ({value})" for text, ok, value in tg] + [""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparsekit.plan.report import draw_recovered

    results = report["results"]
    fig, axes = plt.subplots(len(results), 2, figsize=(13, 4.6 * len(results)), squeeze=False)
    for row, result in zip(axes, results):
        for ax, label in zip(row, ("ideal", "h200")):
            plan = result["plans"][label]
            primary, points = plan["primary"], plan["points"]
            xs, ys = [p["speedup"] for p in points], [p["metrics"][primary] for p in points]
            ax.scatter(xs, ys, color="#999", s=18, label="one-shot")
            front = sorted((p["speedup"], p["metrics"][primary]) for p in points if p["frontier"])
            ax.plot([f[0] for f in front], [f[1] for f in front], color="#76b900", linewidth=2, label="frontier (one-shot)")
            draw_recovered(ax, plan, "speedup", "chosen (within 1 point)")
            ax.axhline(plan["dense"][primary], color="#555", linestyle="--", linewidth=1, label="dense")
            if not any(p["sparse"] for p in points):
                ax.text(0.5, 0.25, "no layer's 2:4 GEMM is faster than dense\nby this table at this batch: kept dense", transform=ax.transAxes, ha="center", fontsize=9)
            ax.set_xlabel("expected speedup, " + ("ideal 2x per 2:4 GEMM" if label == "ideal" else "H200 GEMM table"))
            ax.set_ylabel(primary)
            ax.set_title(f"{result['task']}: {'ideal 2x' if label == 'ideal' else 'H200 table'}")
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def render(out: Path) -> int:
    """Draw ``plan.md`` and ``plan.png`` from ``out/plan.json`` (no measurement)."""
    from sparsekit._io import atomic_path, write_text_atomic

    report = json.loads((out / "plan.json").read_text())
    write_text_atomic(out / "plan.md", render_markdown(report))
    with atomic_path(out / "plan.png") as tmp:
        plot(report, tmp)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--models", nargs="+", default=["digits32", "docstrings"], choices=sorted(MODELS))
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for plan.{json,md,png}")
    parser.add_argument("--update", action="store_true", help="keep the other models of an existing <out>/plan.json")
    parser.add_argument("--render", action="store_true", help="only draw <out>/plan.md and plan.png again from <out>/plan.json")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.out)
    from accuracy import merge_results

    from sparsekit._io import atomic_path, write_json_atomic, write_text_atomic
    from sparsekit.bench.machine import machine_facts

    command = "python benchmarks/plan.py " + " ".join(argv if argv is not None else sys.argv[1:])
    previous = json.loads((args.out / "plan.json").read_text())["results"] if args.update and (args.out / "plan.json").exists() else []
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        start = time.perf_counter()
        result = run_model(name, lambda m: print(m, file=sys.stderr, flush=True))
        results.append({**result, "command": command, "seconds": round(time.perf_counter() - start, 1)})
        merged = merge_results(previous, results)
        report = {"machine": machine_facts(), "command": command, "speed_table": str(H200_TABLE.relative_to(HERE.parent)), "results": merged}
        report["targets"] = {r["task"]: [{"target": t, "met": ok, "measured": v} for t, ok, v in targets(r)] for r in merged}
        write_json_atomic(args.out / "plan.json", report)
        write_text_atomic(args.out / "plan.md", render_markdown(report))
        with atomic_path(args.out / "plan.png") as tmp:
            plot(report, tmp)
    print(json.dumps(report["targets"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
