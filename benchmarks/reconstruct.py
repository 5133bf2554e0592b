"""Block-wise reconstruction on the 2:4 MiniLM: what it wins back alone, before distillation, and at the
plan's fastest frontier points.

Starts, all on the docstrings task (2,000 ``eval_large`` pairs, recall@1 and fidelity; calibration
and training on the broad text), with the accuracy table's settings (``benchmarks/accuracy.py``):

- ``all``: every one of the 36 layers 2:4, SparseGPT + channel permutation (the accuracy table's
  start); reconstructed, then (last, the longest row) distilled for the table's 3 epochs (813
  steps) from the reconstructed model, so it compares at equal steps with the table's distilled row;
- ``point N``: point N of the committed plan (``benchmarks/results/plan.json``, docstrings, ideal
  speed), i.e. its 2:4 layer list, SparseGPT without permutation as the plan evaluates it;
  reconstructed, then with ``--distill-points E`` distilled for E epochs from the reconstructed
  model (what ``sparsekit plan --reconstruct-steps`` does at its frontier points).

Reconstruction (:func:`sparsekit.recover.reconstruct.reconstruct_blocks_`): each of the six encoder
layers in turn, fed the 2:4 model's own hidden state, is trained (masks fixed) to reproduce the
dense layer's output, on ``--samples`` calibration texts of the broad corpus. Every model is also
evaluated on ``heldout`` and ``ood``. Wall and process CPU seconds are recorded per step.

Usage: python benchmarks/reconstruct.py [--points 1 3] [--no-all] [--steps 150] [--lr 2e-4] [--samples 512]
       [--distill-epochs 3] [--distill-points 0] [--name reconstruct] [--out benchmarks/results]
Results: ``<out>/<name>.{json,md}``, rewritten after every model.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PLAN = HERE / "results" / "plan.json"


def _diff(d: dict | None) -> str:
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" if d else ""


def render_markdown(report: dict) -> str:
    """The rows of ``reconstruct.json`` as a page."""
    from sparsekit.bench.machine import machine_line
    m = report["machine"]
    lines = [
        "# Block-wise reconstruction of the 2:4 MiniLM (docstrings task)", "",
        machine_line(m) + " CPU only.",
        f"Command: `{report['command']}`. " + ("Complete." if report["complete"] else "**Incomplete**: the rows measured so far."), "",
        f"Dense recall@1 {report['dense']['recall@1']:.2f} (heldout {report['dense_splits']['heldout']['recall@1']:.2f}, ood {report['dense_splits']['ood']['recall@1']:.2f}). "
        f"Reconstruction: {report['settings']['steps']} steps per encoder layer (6 layers), lr {report['settings']['lr']} (cosine to 0 per layer), "
        f"{report['settings']['samples']} broad-text calibration samples, batch 32, masks fixed. Distillation as the accuracy table's broad-text row.", "",
        "| start | 2:4 layers | ideal bound | model | recall@1 | vs dense, points [95% CI] | fidelity | heldout vs dense | ood vs dense | steps | wall min | CPU min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        rb = r.get("robustness", {})
        lines.append(f"| {r['start']} | {r['layers']} | {r['speedup_ideal']:.2f}x | {r['model']} | {r['metrics']['recall@1']:.2f} | {_diff(r['diff'])} | {r['metrics']['fidelity']:.3f} | "
                     f"{_diff(rb.get('heldout', {}).get('diff'))} | {_diff(rb.get('ood', {}).get('diff'))} | {r.get('steps', '')} | {r['wall_s'] / 60:.1f} | {r['cpu_s'] / 60:.1f} |")
    if report.get("reference_rows") and any(r["start"].startswith("all") for r in report["rows"]):
        lines += ["", "The accuracy table's rows for the same all-layers start (`benchmarks/results/accuracy.json`): " + "; ".join(f"{k}: {_diff(v)}" for k, v in sorted(report["reference_rows"].items())) + "."]
    if report.get("targets"):
        lines += ["", "Targets:", ""] + [f"- {'MET' if ok else 'MISSED'}: {what} ({detail})" for what, ok, detail in report["targets"]]
    return "\n".join(lines) + "\n"


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    """The plan's accuracy target, on the measured rows."""
    within = [r for r in rows if r["diff"]["diff"] >= -1.0]
    best = max(within, key=lambda r: r["speedup_ideal"], default=None)
    detail = f"fastest within 1 point: {best['start']} ({best['model']}), {best['speedup_ideal']:.2f}x ideal, {_diff(best['diff'])}" if best else "no measured model within 1 point"
    return [("a frontier point within 1 point of dense recall@1 with an ideal Amdahl bound of at least 1.6x", bool(best and best["speedup_ideal"] >= 1.6), detail)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--points", type=int, nargs="*", default=[1, 3], help="indices of the committed plan's docstrings points (ideal speed) to reconstruct (default 1 3: 33 and 29 layers 2:4, ideal 1.83x and 1.63x)")
    parser.add_argument("--all", action=argparse.BooleanOptionalAction, default=True, help="also the all-layers SparseGPT+perm start, reconstructed then distilled")
    parser.add_argument("--steps", type=int, default=150, help="reconstruction steps per encoder layer")
    parser.add_argument("--lr", type=float, default=2e-4, help="reconstruction peak learning rate")
    parser.add_argument("--samples", type=int, default=512, help="calibration samples the reconstruction trains on")
    parser.add_argument("--distill-epochs", type=int, default=3, help="epochs of distillation after reconstructing the all-layers start (0: none)")
    parser.add_argument("--distill-points", type=int, default=0, help="epochs of distillation after reconstructing each plan point (0: none)")
    parser.add_argument("--name", default="reconstruct", help="file name of the results, without suffix (default reconstruct)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for <name>.{json,md}")
    args = parser.parse_args(argv)

    import torch
    from accuracy import SETTINGS

    from sparsekit._io import write_json_atomic, write_text_atomic
    from sparsekit.bench.machine import machine_facts
    from sparsekit.models.source import load_model
    from sparsekit.recover.finetune import TrainingConfig
    from sparsekit.recover.reconstruct import reconstruct_blocks_
    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
    from sparsekit.sparsify.sparsify import sparsify_
    from sparsekit.tasks import get_task
    from sparsekit.tasks.metrics import paired_difference

    s = SETTINGS["docstrings"]
    plan = next(r for r in json.loads(PLAN.read_text(encoding="utf-8"))["results"] if r["task"] == "docstrings")["plans"]["ideal"]
    accuracy = next(r for r in json.loads((HERE / "results" / "accuracy.json").read_text(encoding="utf-8"))["results"] if r["task"] == "docstrings")
    command = "python benchmarks/reconstruct.py " + " ".join(argv if argv is not None else sys.argv[1:])
    torch.manual_seed(0)
    task = get_task("docstrings", **s.task_args)
    splits = {split: get_task("docstrings", **{**s.task_args, "eval_split": split}) for split in s.robustness}
    dense_model = load_model(task.model[0], task.model[1]).model
    dense = task.evaluate(dense_model)
    dense_splits = {split: t.evaluate(dense_model) for split, t in splits.items()}
    calib = task.calibration(s.calib_samples)
    rec_batches = task.calibration(args.samples, batch_size=32)
    report = {
        "machine": machine_facts(), "command": command, "complete": False, "dense": {k: round(v, 4) for k, v in dense.metrics.items()},
        "dense_splits": {k: {m: round(v, 4) for m, v in r.metrics.items()} for k, r in dense_splits.items()},
        "settings": {"steps": args.steps, "lr": args.lr, "samples": args.samples, "distill_epochs": args.distill_epochs, "distill_points_epochs": args.distill_points, "ft_lr": s.ft_lr, "batch": s.batch, "calib_samples": s.calib_samples, "permute_sweeps": s.permute_sweeps},
        "reference_rows": {r["name"]: r["diff"] for r in accuracy["rows"] if r["name"].startswith(("2:4 sparsegpt+perm one-shot", "2:4 sparsegpt+perm + fine-tune w/ distillation, broad text, fixed"))},
        "rows": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        report["targets"] = targets(report["rows"])
        write_json_atomic(args.out / f"{args.name}.json", report)
        write_text_atomic(args.out / f"{args.name}.md", render_markdown(report))

    def add(start: str, layers: int, speedup: float, model_name: str, model, clock: tuple[float, float], **extra) -> None:
        result = task.evaluate(model, dense)
        row = {"start": start, "layers": layers, "speedup_ideal": round(speedup, 4), "model": model_name, "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
               "diff": paired_difference(dense.per_item, result.per_item).to_dict(), **extra}
        row["robustness"] = {}
        for split, t in splits.items():
            r = t.evaluate(model, dense_splits[split])
            row["robustness"][split] = {"metrics": {k: round(v, 4) for k, v in r.metrics.items()}, "diff": paired_difference(dense_splits[split].per_item, r.per_item).to_dict()}
        row["wall_s"], row["cpu_s"] = round(time.perf_counter() - clock[0], 1), round(time.process_time() - clock[1], 1)
        report["rows"].append(row)
        print(f"[reconstruct] {start} / {model_name}: recall@1 {row['metrics']['recall@1']:.2f} ({_diff(row['diff'])}), fidelity {row['metrics']['fidelity']:.3f}", file=sys.stderr, flush=True)
        write()

    def reconstruct(model) -> dict:
        return reconstruct_blocks_(model, dense_model, task.feature_layers(model), rec_batches, args.steps, args.lr).to_dict()

    starts = ([("all 2:4, SparseGPT+perm", None)] if args.all else []) + [(f"plan point {i}", plan["points"][i]) for i in args.points]
    to_distill = []
    for start, point in starts:
        clock = (time.perf_counter(), time.process_time())
        if point is None:
            model, sparse = sparsify_(copy.deepcopy(dense_model), "sparsegpt", calib=calib, permute=True, permute_sweeps=s.permute_sweeps)
            layers, speedup = len(sparse.sparsified), plan["points"][0]["speedup_ideal"]
        else:
            model, _ = sparsify_(copy.deepcopy(dense_model), "sparsegpt", calib=calib, include=point["sparse"])
            layers, speedup = len(point["sparse"]), point["speedup_ideal"]
        add(start, layers, speedup, "one-shot", model, clock, **({"plan_one_shot": point["diff"]} if point else {}))
        clock = (time.perf_counter(), time.process_time())
        rec = reconstruct(model)
        add(start, layers, speedup, "reconstructed", model, clock, steps=rec["steps"], blocks=rec["blocks"])
        epochs = args.distill_epochs if point is None else args.distill_points
        if epochs:
            to_distill.append((start, layers, speedup, model, epochs))
    for start, layers, speedup, model, epochs in to_distill:  # last: the longest rows
        clock = (time.perf_counter(), time.process_time())
        student, ft = finetune_on_task_(model, task, TrainingConfig(epochs=epochs, lr=s.ft_lr, weight_decay=0.01), s.batch, teacher=dense_model,
                                        distill=DistillConfig(features=s.features, student_loss_weight=s.student_loss_weight))
        add(start, layers, speedup, f"reconstructed + distilled {epochs} epoch{'s' if epochs != 1 else ''}", student, clock, steps=ft.steps)
    report["complete"] = True
    write()
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
