"""How long a distillation schedule the all-layers 2:4 MiniLM needs: fidelity and recall@1 per epoch.

The accuracy table (``benchmarks/accuracy.py``) distils the all-layers 2:4 SparseGPT+perm MiniLM
for 3 epochs on the broad text (813 steps): fidelity 0.945, recall@1 3.0 points below dense. This
script runs the same start, loss, learning rate and batch for ``--epochs`` epochs (one cosine
schedule over all of them), evaluates the student on the 2,000 ``eval_large`` pairs after every
epoch, and at the end on ``heldout`` and ``ood``. The per-epoch points lie on one schedule, so the
last one is the schedule's result; the earlier ones show whether the curve is still rising.

With ``--masks learned`` the same run trains SR-STE masks instead (``--mask-update-until 0.5``: the
masks move for the first half of the steps, then freeze), for the accuracy table's comparison of
fixed and learned masks at equal steps.

Usage: python benchmarks/schedule.py [--epochs 6] [--masks learned --mask-update-until 0.5] [--out benchmarks/results]
Results: ``<out>/schedule.{json,md}`` (learned masks: ``schedule_learned_<share>.{json,md}``),
rewritten after every epoch (a run cut short keeps its epochs). CPU time is the process's (all
threads), next to the wall time.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def render_markdown(report: dict) -> str:
    from sparsekit.bench.machine import machine_line
    m = report["machine"]
    lines = [
        "# Distillation schedule of the all-layers 2:4 MiniLM (docstrings task)", "",
        machine_line(m) + " CPU only.",
        f"Command: `{report['command']}`. " + ("Complete." if report["complete"] else "**Incomplete**: the epochs measured so far."), "",
        f"Start: 2:4 SparseGPT+perm one-shot on all {report['sparsified_layers']} layers (recall@1 {report['one_shot']['recall@1']:.1f}, fidelity {report['one_shot']['fidelity']:.3f}); "
        f"dense recall@1 {report['dense']['recall@1']:.1f}. Distillation: {report['settings']}.", "",
        "| epoch | steps | recall@1 | vs dense, points [95% CI] | fidelity | wall min | CPU min |", "|---|---|---|---|---|---|---|",
    ]
    for e in report["epochs"]:
        d = e.get("diff")
        diff = f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]" if d else ""
        lines.append(f"| {e['epoch']} | {e['steps']} | {e['metrics']['recall@1']:.1f} | {diff} | {e['metrics']['fidelity']:.3f} | {e['wall_s'] / 60:.1f} | {e['cpu_s'] / 60:.1f} |")
    for split, r in report.get("robustness", {}).items():
        d = r["diff"]
        lines.append(f"\n{split}: recall@1 {r['metrics']['recall@1']:.1f} ({d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] vs dense), fidelity {r['metrics']['fidelity']:.3f}")
    if report.get("masks", {}).get("kind") == "learned":
        mk = report["masks"]
        lines += ["", f"Learned masks: {mk['flips']:,} mask flips" + (f", frozen at step {mk['frozen_at']}" if mk["frozen_at"] else ", moving to the last step") + "."]
    if report["epochs"] and report["complete"]:
        last = report["epochs"][-1]
        ok = last["metrics"]["fidelity"] >= 0.95
        lines += ["", f"Target (all layers 2:4, fidelity >= 0.95): {'MET' if ok else 'MISSED'} ({last['metrics']['fidelity']:.3f} after {last['steps']} steps, {last['cpu_s'] / 60:.0f} CPU min)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the one cosine schedule (default 6; the table uses 3)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for schedule.{json,md}")
    parser.add_argument("--masks", choices=("fixed", "learned"), default="fixed", help="fixed (the table's broad-text row) or learned (SR-STE)")
    parser.add_argument("--mask-update-until", type=float, default=1.0, metavar="SHARE", help="with learned masks: share of the steps the masks move, then frozen (1: to the end)")
    args = parser.parse_args(argv)
    stem = "schedule" if args.masks == "fixed" else f"schedule_learned_{args.mask_update_until:g}"

    import torch
    from accuracy import SETTINGS

    from sparsekit._io import write_json_atomic, write_text_atomic
    from sparsekit.bench.machine import machine_facts
    from sparsekit.models.source import load_model
    from sparsekit.recover.finetune import TrainingConfig
    from sparsekit.recover.task_finetune import DistillConfig, finetune_on_task_
    from sparsekit.sparsify.sparsify import sparsify_
    from sparsekit.tasks import get_task
    from sparsekit.tasks.metrics import paired_difference

    s = SETTINGS["docstrings"]
    command = "python benchmarks/schedule.py " + " ".join(argv if argv is not None else sys.argv[1:])
    torch.manual_seed(0)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    task = get_task("docstrings", **s.task_args)
    loaded = load_model(task.model[0], task.model[1])
    dense_model = loaded.model
    dense = task.evaluate(dense_model)
    model, sparse_report = sparsify_(copy.deepcopy(dense_model), "sparsegpt", calib=task.calibration(s.calib_samples), permute=True, permute_sweeps=s.permute_sweeps)
    one_shot = task.evaluate(model, dense)
    report = {
        "machine": machine_facts(), "command": command, "complete": False, "sparsified_layers": len(sparse_report.sparsified),
        "dense": {k: round(v, 4) for k, v in dense.metrics.items()}, "one_shot": {k: round(v, 4) for k, v in one_shot.metrics.items()},
        "settings": f"{args.epochs} epochs, lr {s.ft_lr} (warm-up then cosine to 0), batch {s.batch}, weight decay 0.01, output + per-layer feature loss, "
                    + ("fixed masks" if args.masks == "fixed" else f"learned masks (SR-STE, decay 2e-4), moving for the first {args.mask_update_until:.0%} of the steps") + ", broad text",
        "epochs": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        write_json_atomic(args.out / f"{stem}.json", report)
        write_text_atomic(args.out / f"{stem}.md", render_markdown(report))

    steps_per_epoch = {}

    def progress(info: dict) -> None:
        steps_per_epoch["total"] = info["steps"]
        if info["step"] % 50 == 0:
            print(f"step {info['step']}/{info['steps']} loss {info['loss']:.4f}", file=sys.stderr, flush=True)

    def on_epoch(result, epoch: int) -> None:
        total = steps_per_epoch.get("total", 0)
        report["epochs"].append({"epoch": epoch, "steps": total * epoch // args.epochs, "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
                                 "diff": paired_difference(dense.per_item, result.per_item).to_dict(), "wall_s": round(time.perf_counter() - wall0, 1), "cpu_s": round(time.process_time() - cpu0, 1)})
        print(f"epoch {epoch}: {report['epochs'][-1]['metrics']}", file=sys.stderr, flush=True)
        write()

    epoch_task = _EvalHook(task, on_epoch)
    training = TrainingConfig(epochs=args.epochs, lr=s.ft_lr, weight_decay=0.01, masks=args.masks, mask_update_until=args.mask_update_until)
    student, ft = finetune_on_task_(model, epoch_task, training, s.batch, teacher=dense_model,
                                    distill=DistillConfig(features=s.features, student_loss_weight=s.student_loss_weight), progress=progress, evaluate_each_epoch=True, reference=dense)
    report["robustness"] = {}
    for split in s.robustness:
        t = get_task("docstrings", **{**s.task_args, "eval_split": split})
        ref = t.evaluate(dense_model)
        r = t.evaluate(student, ref)
        report["robustness"][split] = {"metrics": {k: round(v, 4) for k, v in r.metrics.items()}, "diff": paired_difference(ref.per_item, r.per_item).to_dict()}
    report["masks"] = {"kind": args.masks, "update_until": args.mask_update_until, "flips": ft.mask_flips, "frozen_at": ft.masks_frozen_at}
    report["complete"] = True
    report["wall_s"], report["cpu_s"] = round(time.perf_counter() - wall0, 1), round(time.process_time() - cpu0, 1)
    write()
    print(render_markdown(report))
    return 0


class _EvalHook:
    """The task, with ``evaluate`` also handing each per-epoch evaluation the trainer asks for to
    ``on_epoch(result, epoch)``."""

    def __init__(self, task, on_epoch) -> None:
        self._task, self._on_epoch, self._epoch = task, on_epoch, 0

    def __getattr__(self, name):
        return getattr(self._task, name)

    def evaluate(self, model, reference=None):
        result = self._task.evaluate(model, reference)
        self._epoch += 1
        self._on_epoch(result, self._epoch)
        return result


if __name__ == "__main__":
    sys.exit(main())
