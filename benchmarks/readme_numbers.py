"""The README's measured numbers, rendered from the committed results so they cannot drift.

Each block of the README between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->`` is the
output of one function below, fed by a JSON file under ``benchmarks/results/``:

    python benchmarks/readme_numbers.py          # rewrite the blocks in README.md
    python benchmarks/readme_numbers.py --check  # exit 1 when README.md and the results disagree

``tests/bench/test_readme_numbers.py`` runs the check, so a result changed without its README
sentence (or a sentence edited by hand) fails the suite.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "benchmarks" / "results" / "nvidia-h200" / "gpu_suite.json"


def _units(doc: dict, job: str) -> list[dict]:
    """The result dicts with a speedup of one job of a GPU-suite document."""
    for j in doc["jobs"]:
        if j["name"] == job:
            return [u["result"] for u in j["units"] if isinstance(u.get("result"), dict) and "speedup" in u["result"]]
    return []


def _kernel_ratio(row: dict) -> float | None:
    k = row.get("kernels") or {}
    dense = ((k.get("dense") or {}).get("family_us") or {}).get("dense-gemm")
    sparse = ((k.get("sparse") or {}).get("family_us") or {}).get("sparse-gemm")
    return dense / sparse if dense and sparse else None


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x"


def h200_paragraph(doc: dict) -> str:
    """The first GPU run's GEMM and end-to-end numbers, as the README states them."""
    gemm = {}
    for j in doc["jobs"]:
        if j["name"] in ("gemm", "bf16"):
            for u in j["units"]:
                r = u.get("result")
                if isinstance(r, dict) and "speedup" in r and "M=" in u["label"]:
                    gemm[(j["name"], u["label"])] = r["speedup"]["ratio"]

    def g(name: str, m: int, job: str = "gemm") -> float:
        return next(v for (jn, label), v in gemm.items() if jn == job and label.startswith(name) and label.endswith(f"M={m}"))

    small = [v for (jn, label), v in gemm.items() if jn == "gemm" and label.endswith("M=4096")]
    e2e = [r["speedup"]["ratio"] for job in ("bert-large-seq384", "bert-large-seq128", "batch-1", "bf16") for r in _units(doc, job) if "seq" in r]
    k384 = [x for r in _units(doc, "bert-large-seq384") if (x := _kernel_ratio(r))]
    k128 = [x for r in _units(doc, "bert-large-seq128") if (x := _kernel_ratio(r))]
    k1 = [x for r in _units(doc, "batch-1") if (x := _kernel_ratio(r))]
    slower = [1 / x for x in e2e]
    return (
        "Measured on one NVIDIA H200 with PyTorch 2.11's 2:4 kernels (cuSPARSELt 0.8), no TensorRT\n"
        f"(`benchmarks/results/nvidia-h200/`): at M = 16384 in fp16, BERT-large FFN GEMMs {g('bert-large ffn_in', 16384):.2f}x and {g('bert-large ffn_out', 16384):.2f}x,\n"
        f"BERT-base ffn_in {g('bert-base ffn_in', 16384):.2f}x but ffn_out {g('bert-base ffn_out', 16384):.2f}x, and the 1024x1024 / 768x768 projections "
        f"{g('bert-large qkv/out', 16384):.2f}x / {g('bert-base qkv/out', 16384):.2f}x\n"
        f"(bf16: BERT-large FFN {_span([g('bert-large ffn_in', 16384, 'bf16'), g('bert-large ffn_out', 16384, 'bf16')])}); at M = 4096 every shape was "
        f"{'slower than dense' if max(small) < 1 else 'at most'} ({_span(small)}). The\n"
        f"BERT-large-shaped model end to end was {min(slower):.1f}-{max(slower):.1f}x *slower* than dense ({_span(e2e)}), and the kernel profile shows why\n"
        "(the 2:4 outputs' layout pushed attention off its fused kernel into fp32 math). The 2:4 GEMM\n"
        f"kernels themselves took {_span(k384)} of cuBLAS's time at sequence 384 (batch 8-128), but {_span(k128)}\n"
        f"at sequence 128 and {_span(k1)} at batch 1.\n"
    )


ACCURACY = ROOT / "benchmarks" / "results" / "accuracy.json"


def _ci(d: dict) -> str:
    return f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def _row(result: dict, start: str) -> dict:
    return next(r for r in result["rows"] if r["name"].strip().startswith(start))


def accuracy_paragraph(doc: dict) -> str:
    """The accuracy table's headline rows (MiniLM, the k x k conv SparseGPT comparison), as the README states them."""
    res = {r["task"]: r for r in doc["results"]}
    ds, p = res["docstrings"], res["docstrings"]["primary"]
    dense = ds["rows"][0]["metrics"][p]
    mag, sgpt = _row(ds, "2:4 magnitude one-shot"), _row(ds, "2:4 sparsegpt one-shot")
    ft = _row(ds, "2:4 sparsegpt+perm + fine-tune w/ distillation, broad text, fixed masks")
    qat = _row(ds, "+ INT8 QAT")
    target = next(t for t in doc["targets"]["docstrings"] if t["target"].startswith("2:4 + distillation within 1 point"))
    rob = ft["extra"]["robustness"]
    span0 = all(rob[s]["diff"]["low"] <= 0 <= rob[s]["diff"]["high"] for s in ("heldout", "ood"))
    e = qat["extra"]["export"]
    kept = f"on all {e['onnx_required_layers']} layers" if e["onnx_2to4_layers"] == e["onnx_required_layers"] else f"on {e['onnx_2to4_layers']} of {e['onnx_required_layers']} layers"

    def conv(task: str) -> tuple[float, float, dict]:
        r = res[task]
        ours, fallback = _row(r, "2:4 sparsegpt one-shot"), _row(r, "2:4 sparsegpt, k x k convs magnitude one-shot")
        return ours["metrics"]["accuracy"], fallback["metrics"]["accuracy"], ours["extra"]["vs_conv_magnitude"]

    a32, f32, d32 = conv("digits32")
    a8, f8, d8 = conv("digits")
    noise8 = d8["low"] <= 0 <= d8["high"]
    return (
        f"The measured table (`benchmarks/accuracy.py`, {doc['total_seconds'] / 60:.0f} min on 2 CPU cores) is in\n"
        f"`benchmarks/results/accuracy.md`. MiniLM, {ds['eval_items']:,} evaluation pairs, {p} (dense {dense:.1f}): one-shot\n"
        f"magnitude {mag['metrics'][p]:.1f}, SparseGPT {sgpt['metrics'][p]:.1f}; distilled on the broad text {ft['metrics'][p]:.1f} with fidelity {ft['metrics']['fidelity']:.3f}\n"
        f"({_ci(ft['diff'])} points: the 1-point target is {'met' if target['met'] else 'missed'}; on the untouched `heldout` and `ood` splits the same\n"
        f"student is {rob['heldout']['diff']['diff']:+.1f} and {rob['ood']['diff']['diff']:+.1f} points{', intervals spanning 0' if span0 else ''}); + INT8 QAT {qat['metrics'][p]:.1f}, and its INT8 ONNX keeps 2:4\n"
        f"{kept}. SparseGPT on k x k convs in TensorRT's layout: {a32:.1f}% one-shot on the 32x32 digits\n"
        f"CNN against {f32:.1f}% with magnitude masks (paired {_ci(d32)}); on the 8x8 digits CNN it\n"
        f"is {a8:.1f}% against {f8:.1f}% (paired {_ci(d8)}{', within noise' if noise8 else ''}: its maps shrink to 2x2, so most\n"
        "im2col columns are padding).\n"
    )


PLAN = ROOT / "benchmarks" / "results" / "plan.json"


def _best(point: dict) -> tuple[dict, str]:
    """The model the point stands for (:func:`sparsekit.plan.planner.best_of`) and its name."""
    from sparsekit.plan.planner import best_of

    name, _ = best_of(point.get("diff"), ("reconstructed", point.get("reconstructed")), ("distilled", point.get("distilled")))
    return (point if name == "one-shot" else point[name]), name


def _plan_sentence(result: dict) -> str:
    ideal, h200 = result["plans"]["ideal"], result["plans"]["h200"]
    primary, n = ideal["primary"], len(ideal["trades"])
    chosen = ideal["points"][ideal["chosen"]]
    best, how = _best(chosen)
    how = how.replace("distilled", f"distilled {ideal['config']['distill_epochs']} epoch(s)")
    first = ideal["points"][0]
    full, full_how = _best(first)
    full_how = full_how.replace("distilled", f"distilled {ideal['config']['distill_epochs']} epoch(s)")
    extra = f", fidelity {full['metrics']['fidelity']:.3f}" if "fidelity" in full["metrics"] else ""
    head = f"{result['task']} (dense {primary} {ideal['dense'][primary]:.1f}, one-shot with every layer 2:4 {_ci(first['diff'])}): "
    if chosen is first:
        sentence = head + f"every layer 2:4 is within {ideal['config']['max_drop']:g} point of dense ({full_how} {_ci(full['diff'])} points{extra}), ideal bound {first['speedup_ideal']:.2f}x. "
    else:
        sentence = head + (
            f"the fastest point within {ideal['config']['max_drop']:g} point of dense keeps {len(chosen['sparse'])} of {n} layers 2:4, ideal bound "
            f"{chosen['speedup_ideal']:.2f}x ({how} {_ci(best['diff']) if best.get('diff') else '+0.0'} points); every layer 2:4 ({first['speedup_ideal']:.2f}x) "
            f"is {_ci(full['diff'])} {full_how}{extra}. "
        )
    guessed = sum(t["speed"]["how"].startswith("nearest shape") for t in h200["trades"])
    source = f" ({guessed} of {len(h200['trades'])} layers' shapes not measured there: the nearest measured shape's ratio)" if guessed else ""
    if not h200["points"][h200["chosen"]]["sparse"]:
        sentence += f"By the H200 table{source} every layer's GEMM is slower 2:4 at batch {h200['config']['batch']}, so that plan keeps the model dense."
    else:
        c = h200["points"][h200["chosen"]]
        sentence += f"By the H200 table the plan keeps {len(c['sparse'])} layers 2:4 for an expected {c['speedup']:.2f}x."
    return sentence


def plan_paragraph(doc: dict) -> str:
    """The plan benchmark's headline per model, as the README states it."""
    seconds = sum(r.get("seconds", 0) for r in doc["results"])
    lines = [f"Measured (`benchmarks/plan.py`, {seconds / 60:.0f} min on 2 CPU cores; `benchmarks/results/plan.md`, expected speed from the ideal 2x and from the committed H200 GEMM table):"]
    for r in doc["results"]:
        targets = "".join(f" Target {'met' if t['met'] else 'missed'}: {t['target']} ({t['measured']})." for t in doc.get("targets", {}).get(r["task"], []))
        lines.append(f"- {_plan_sentence(r)}{targets}")
    return "\n".join(lines) + "\n"


SCHEDULE = ROOT / "benchmarks" / "results" / "schedule.json"


def schedule_sentence(doc: dict) -> str:
    """The longer distillation schedule of the all-layers 2:4 MiniLM, as the README states it."""
    last = doc["epochs"][-1]
    curve = ", ".join(f"{e['metrics']['fidelity']:.3f}" for e in doc["epochs"])
    return (
        f"A longer schedule (`benchmarks/schedule.py`, {len(doc['epochs'])} epochs, {last['steps']:,} steps, {last['wall_s'] / 60:.0f} min wall / "
        f"{last['cpu_s'] / 60:.0f} CPU min) takes the all-layers MiniLM to fidelity {last['metrics']['fidelity']:.3f} (per epoch: {curve}), "
        f"while recall@1 stays {_ci(last['diff'])} points from dense.\n"
    )


LEARNED = ROOT / "benchmarks" / "results" / "schedule_learned_0.5.json"


def learned_sentence(doc: dict) -> str:
    """SR-STE with masks frozen part-way, at the accuracy table's steps, as the README states it."""
    last, mk = doc["epochs"][-1], doc["masks"]
    table = next(r for r in json.loads(ACCURACY.read_text(encoding="utf-8"))["results"] if r["task"] == "docstrings")
    moving, fixed = _row(table, "2:4 sparsegpt+perm + fine-tune w/ distillation, broad text, learned"), _row(table, "2:4 sparsegpt+perm + fine-tune w/ distillation, broad text, fixed")
    counted = re.search(r"(\d+) mask flips", moving.get("note", ""))
    flips_after = int(counted.group(1)) - mk["flips"] if counted else None
    return (
        f"Measured on the all-layers MiniLM at the accuracy table's {last['steps']} steps (`benchmarks/results/schedule_learned_{mk['update_until']:g}.md`): "
        f"masks frozen at step {mk['frozen_at']} give recall@1 {_ci(last['diff'])} points, fidelity {last['metrics']['fidelity']:.3f}; "
        f"masks moving to the end {moving['diff']['diff']:+.1f} and {moving['metrics']['fidelity']:.3f}, fixed masks {fixed['diff']['diff']:+.1f} and {fixed['metrics']['fidelity']:.3f} (`accuracy.md`)"
        + (f". The two learned runs are the same up to the freeze, and the moving one flipped {flips_after:,} mask entries after it ({mk['flips']:,} before): the masks had settled, so freezing them changes little" if flips_after is not None else "")
        + ".\n"
    )


RECONSTRUCT = ROOT / "benchmarks" / "results" / "reconstruct.json"


def reconstruct_paragraph(doc: dict) -> str:
    """Block reconstruction on the 2:4 MiniLM (all layers, and the plan's fastest points), as the README states it."""
    rows, st = doc["rows"], doc["settings"]
    cpu = sum(r["cpu_s"] for r in rows)
    lines = [f"Block reconstruction (`benchmarks/reconstruct.py`, {st['steps']} steps per encoder layer on {st['samples']} broad-text samples, "
             f"{cpu / 60:.0f} CPU min for every row; `benchmarks/results/reconstruct.md`" + ("" if doc["complete"] else "; the run was cut short, these are its measured rows") + "), recall@1 vs dense:"]
    for start in dict.fromkeys(r["start"] for r in rows):
        mine = [r for r in rows if r["start"] == start]
        steps = "; ".join(f"{r['model']} {_ci(r['diff'])} (fidelity {r['metrics']['fidelity']:.3f}" + (f", {r['cpu_s'] / 60:.0f} CPU min" if r["model"] != "one-shot" else "") + ")" for r in mine)
        lines.append(f"- {start}, {mine[0]['layers']} layers 2:4, ideal bound {mine[0]['speedup_ideal']:.2f}x: {steps}.")
    if doc.get("reference_rows"):
        lines.append("- The accuracy table's rows from the same all-layers start (no reconstruction): " + "; ".join(f"{name.removeprefix('2:4 ')} {_ci(d)}" for name, d in sorted(doc["reference_rows"].items())) + ".")
    lines += [f"- Target {'met' if ok else 'missed'}: {what} ({detail})." for what, ok, detail in doc.get("targets", [])]
    return "\n".join(lines) + "\n"


RECONSTRUCT_POINTS = ROOT / "benchmarks" / "results" / "reconstruct_points_distilled.json"


def points_distilled_sentence(doc: dict) -> str:
    """The plan's points reconstructed, then distilled (as ``plan --reconstruct-steps`` does), as the README states it."""
    pairs = []
    for start in dict.fromkeys(r["start"] for r in doc["rows"]):
        mine = {r["model"]: r for r in doc["rows"] if r["start"] == start}
        after = next((r for m, r in mine.items() if "distilled" in m), None)
        if "reconstructed" in mine and after is not None:
            pairs.append((start, mine["reconstructed"], after))
    fid_up = all(b["metrics"]["fidelity"] > a["metrics"]["fidelity"] for _, a, b in pairs)
    rec_down = all(b["diff"]["diff"] < a["diff"]["diff"] for _, a, b in pairs)
    verdict = ("fidelity rose and recall@1 fell at every point (the loss matches outputs, not the retrieval ranking); a plan point keeps the better of its models (`best`)"
               if fid_up and rec_down else "fidelity and recall@1 did not move apart at every point")
    steps = pairs[0][2].get("steps") if pairs else None
    return (f"Distilling the reconstructed points ({steps} steps from the reconstructed model, as `plan --reconstruct-steps` does; `benchmarks/results/reconstruct_points_distilled.md`): "
            + "; ".join(f"{start} fidelity {a['metrics']['fidelity']:.3f} -> {b['metrics']['fidelity']:.3f}, recall@1 {_ci(a['diff'])} -> {_ci(b['diff'])}" for start, a, b in pairs)
            + f". So {verdict}.\n")


OWN_DATA = ROOT / "benchmarks" / "results" / "own_data.json"


def own_data_sentence(doc: dict) -> str:
    """The docstrings rows through the generic data path against the built-in task's, as the README states them."""
    rows = doc["rows"]
    dense = next(r for r in rows if "paired_vs_builtin" in r)
    sparse = [r for r in rows if "vs_dense" in r]
    outside = [r["row"] for r in rows if not r["within_builtin_interval"]]
    ft = doc["fine_tune"]
    return (
        f"The docstrings task's rows through this path (`benchmarks/own_data.py`; `benchmarks/results/own_data.md`, {doc['data']['evaluated']:,} pairs, CPU): dense recall@1 {dense['recall@1']:.2f} through this path, "
        f"{dense['builtin_recall@1']:.2f} through the built-in task on the same pairs (paired {_ci(dense['paired_vs_builtin'])}). Recall@1 points vs dense, this path (built-in task): "
        + "; ".join(f"{r['row'].removeprefix('2:4 ')} {_ci(r['vs_dense'])} ({_ci(r['builtin_vs_dense'])})" for r in sparse)
        + f"; the distillation ran {ft['steps']} steps at {ft['seconds_per_step']:.1f} s a step. "
        + ("Every row lies in the built-in row's 95% interval." if not outside else f"Outside the built-in row's 95% interval: {', '.join(outside)}.")
        + "\n"
    )


BLOCKS = {"h200": (H200, h200_paragraph), "accuracy": (ACCURACY, accuracy_paragraph), "plan": (PLAN, plan_paragraph), "schedule": (SCHEDULE, schedule_sentence),
          "reconstruct": (RECONSTRUCT, reconstruct_paragraph), "learned": (LEARNED, learned_sentence), "own_data": (OWN_DATA, own_data_sentence),
          "points_distilled": (RECONSTRUCT_POINTS, points_distilled_sentence)}
"""Block name -> (results file, renderer)."""


def render(readme: str, blocks: dict = BLOCKS) -> str:
    """``readme`` with every known ``numbers`` block replaced by its rendering.

    Raises:
        ValueError: a block's markers are missing from the README.
    """
    for name, (path, fn) in blocks.items():
        pattern = re.compile(rf"(<!-- numbers:{name} -->\n)(.*?)(<!-- /numbers:{name} -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no '<!-- numbers:{name} -->' block")
        text = fn(json.loads(Path(path).read_text(encoding="utf-8")))
        readme = pattern.sub(lambda m: m.group(1) + text + m.group(3), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render the README's measured numbers from benchmarks/results/*.json.")
    p.add_argument("--check", action="store_true", help="exit 1 when README.md differs from the rendering, changing nothing")
    args = p.parse_args(argv)
    readme = ROOT / "README.md"
    current = readme.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md's measured numbers differ from benchmarks/results: run python benchmarks/readme_numbers.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        tmp = readme.with_suffix(".md.tmp")
        tmp.write_text(wanted, encoding="utf-8")
        tmp.replace(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
