"""The run summary: one JSON and one markdown page from the stage artifacts of a run folder."""

from __future__ import annotations

import json
from pathlib import Path

from sparsekit._io import atomic_path, write_json_atomic, write_text_atomic
from sparsekit.analyze.rules import amdahl_bound
from sparsekit.recipe.results import plot_results, result_rows, results_markdown
from sparsekit.recipe.schema import Recipe
from sparsekit.export.parity import parity_text


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_summary(recipe: Recipe, run_dir: Path) -> dict:
    """Join analysis, sparsify decisions and per-precision ONNX checks into one per-layer view."""
    analysis = _read(run_dir / "analysis.json") or {"layers": [], "summary": {}}
    sparsify = _read(run_dir / "sparsify.json") or {"layers": [], "sparsified": []}
    exports = {p: _read(run_dir / f"model.{p}.report.json") for p in (recipe.export.precisions if recipe.export else [])}
    decisions = {d["name"]: d for d in sparsify["layers"]}
    onnx_sparse = {p: {layer["name"]: layer["is_2to4"] for layer in r["check"]["layers"]} for p, r in exports.items() if r}
    layers = []
    for a in analysis["layers"]:
        d = decisions.get(a["name"], {})
        layers.append({
            "name": a["name"], "kind": a["kind"], "shape": a["shape"], "flop_share": a["flop_share"],
            "trt_eligible": a["trt"]["ok"], "likely_win": a["likely_win"]["ok"],
            "status": d.get("status", "dense"), "reason": d.get("reason", ""), "retained": d.get("retained"),
            "onnx_2to4": {p: m.get(a["name"]) for p, m in onnx_sparse.items()},
        })
    share = sum(layer["flop_share"] or 0 for layer in layers if layer["status"] in ("sparsified", "fallback"))
    win_share = sum(layer["flop_share"] or 0 for layer in layers if layer["status"] in ("sparsified", "fallback") and layer["likely_win"])
    return {
        "name": recipe.name,
        "model": recipe.model.model_dump(mode="json"),
        "method": recipe.sparsify.method if recipe.sparsify else None,
        "precisions": list(exports),
        "sparsified_layers": len(sparsify["sparsified"]),
        "layers_total": len(layers),
        "sparse_flop_share": round(share, 4),
        "amdahl_bound": round(amdahl_bound(share), 3),
        "likely_win_flop_share": round(win_share, 4),
        "amdahl_bound_likely_win": round(amdahl_bound(win_share), 3),
        "exports": {p: (None if r is None else {"size_bytes": r["size_bytes"], "check_passed": r["check"]["passed"], "sparse_verified": len(r["sparsified"]), "parity": r["parity"]}) for p, r in exports.items()},
        "layers": layers,
        "prune": _read(run_dir / "prune.json"),
        "finetune": _read(run_dir / "finetune.json"),
        "int8_eval": _read(run_dir / "int8.eval.json"),
        "results": result_rows(_read(run_dir / "finetune.json"), _read(run_dir / "int8.eval.json"), sparsify if "seconds" in sparsify else None),
    }


def _mark(v) -> str:
    return "-" if v is None else ("yes" if v else "NO")


def _stage_lines(s: dict) -> list[str]:
    """Headline lines of the prune and finetune stages, when the run had them."""
    lines = []
    prune = s.get("prune")
    if prune:
        detail = prune.get("channels") or prune.get("low_rank")
        loop = prune.get("loop")
        if loop:
            last = loop["steps"][loop["accepted"] - 1]
            params, flops = [last["params_unpruned"], last["params"]], [last["flops_unpruned"], last["flops"]]
            extra = f", after {loop['accepted']} prune -> fine-tune step(s): {loop['metric']} {last['metrics'][loop['metric']]:.2f} (unpruned {loop['unpruned'][loop['metric']]:.2f})"
        else:
            params, flops, extra = (detail or {}).get("params"), (detail or {}).get("flops"), ""
        if params:
            lines.append(f"- **Pruned ({prune['granularity']})**: parameters {params[0]:,} -> {params[1]:,} ({params[1] / params[0]:.0%})" + (f", FLOPs {flops[1] / flops[0]:.0%} of the unpruned model" if flops else "") + extra + "; the layers below are the pruned model's.")
        elif prune.get("unstructured"):
            u = prune["unstructured"]
            lines.append(f"- **Unstructured pruning**: {u['sparsity']:.1%} zeros; {u['note']}.")
    tune = s.get("finetune")
    if tune:
        headline = ", ".join(k for k in tune["metrics"] if not k.endswith(("_low", "_high")))
        shown = ", ".join(f"{k} {tune['metrics'][k]:.3f}" for k in headline.split(", ") if k)
        dense = ", ".join(f"{k} {v:.3f}" for k, v in (tune.get("dense") or {}).items() if not k.endswith(("_low", "_high")))
        lines += _cost_line(tune)
        lines.append(f"- **Fine-tuned** on {tune['task']}" + (f" with {tune['quantize']} QAT" if tune.get("quantize") else "") + f": {shown}" + (f" (dense teacher: {dense})" if dense else "") + f"; 2:4 masks {'kept' if tune['masks_2to4'] else 'NOT kept'}.")
    return lines


def _with_interval(metrics: dict, name: str) -> str:
    low, high = metrics.get(f"{name}_low"), metrics.get(f"{name}_high")
    return f"{metrics[name]:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else "")


def _cost_line(tune: dict) -> list[str]:
    """What 2:4 cost and what recovery won, in the task's primary metric (95% intervals)."""
    name, dense, before, after = tune.get("primary"), tune.get("dense") or {}, tune.get("before") or {}, tune.get("metrics") or {}
    if not name or name not in before or name not in after:
        return []
    line = f"- **{name}**: "
    if name in dense:
        line += f"dense {dense[name]:.2f}, "
    line += f"2:4 as loaded {_with_interval(before, name)}"
    if name in dense:
        line += f" (2:4 cost {before[name] - dense[name]:+.2f})"
    line += f", after fine-tuning{' (' + tune['quantize'] + ' QAT)' if tune.get('quantize') else ''} {_with_interval(after, name)} (recovery won {after[name] - before[name]:+.2f})"
    paired = f"{name}_vs_dense"
    if paired in after:
        line += f"; paired difference to dense {after[paired]:+.2f} [{after[paired + '_low']:+.2f}, {after[paired + '_high']:+.2f}]"
    return [line + "."]


def render_markdown(s: dict) -> str:
    """The summary as a markdown page (headline, exports table, per-layer table)."""
    precisions = s["precisions"]
    lines = [
        f"# sparsekit run: {s['name']}",
        "",
        f"Model `{s['model']['source']}` {s['model']['args'] or ''}, method `{s['method']}`.",
        "",
        f"- **{s['sparsified_layers']} of {s['layers_total']} layers** hold 2:4 on TensorRT's axis, "
        f"{100 * s['sparse_flop_share']:.1f}% of the model's matmul/conv FLOPs.",
        f"- **Amdahl bound: {s['amdahl_bound']:.2f}x** end to end if exactly these layers ran 2x faster "
        "(an upper bound from FLOPs; memory-bound ops and kernels TensorRT keeps dense lower it).",
        f"- If only the wide layers likely to win run sparse ({100 * s['likely_win_flop_share']:.1f}% of FLOPs), "
        f"the bound is **{s['amdahl_bound_likely_win']:.2f}x**.",
        "- No speedup is measured here: 2:4 kernels need an Ampere+ GPU (TensorRT or PyTorch semi-structured).",
        *_stage_lines(s),
        *(["", *results_markdown(s["results"])] if s.get("results") else []),
        "",
        "## ONNX variants",
        "",
        "| precision | size (MB) | 2:4 layers verified | check | ORT vs PyTorch rel. err (limit) | reference |",
        "|---|---:|---:|---|---|---|",
    ]
    for p in precisions:
        e = s["exports"][p]
        if e is None:
            lines.append(f"| {p} | - | - | not run | - | - |")
            continue
        par = e["parity"]
        lines.append(f"| {p} | {e['size_bytes'] / 1e6:.2f} | {e['sparse_verified']} | {'pass' if e['check_passed'] else 'FAIL'} | {parity_text(par)} {'pass' if par['passed'] else 'FAIL'} | {par['reference']} |")
    lines += ["", "## Layers", "", "| layer | kind | weight | FLOPs % | TRT-eligible | likely win | sparsify | kept L1 | " + " | ".join(f"2:4 in {p}" for p in precisions) + " |", "|---" * (8 + len(precisions)) + "|"]
    for layer in s["layers"]:
        share = "-" if layer["flop_share"] is None else f"{100 * layer['flop_share']:.1f}"
        kept = "-" if layer["retained"] is None else f"{layer['retained']:.3f}"
        cells = [f"`{layer['name']}`", layer["kind"], "x".join(map(str, layer["shape"])), share, _mark(layer["trt_eligible"]), _mark(layer["likely_win"]), layer["status"], kept]
        cells += [_mark(layer["onnx_2to4"].get(p)) for p in precisions]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [layer for layer in s["layers"] if layer["status"] in ("fallback", "skipped")]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- `{layer['name']}` {layer['status']}: {layer['reason']}" for layer in notes]
    return "\n".join(lines) + "\n"


def write_summary(recipe: Recipe, run_dir: Path) -> dict:
    """Write ``summary.json``, ``summary.md`` and (when the run evaluated a task) ``summary.png``
    into ``run_dir``; return the headline numbers."""
    s = build_summary(recipe, run_dir)
    write_json_atomic(run_dir / "summary.json", s)
    write_text_atomic(run_dir / "summary.md", render_markdown(s))
    if s["results"]:
        with atomic_path(run_dir / "summary.png") as tmp:
            plot_results(s["results"], tmp, f"{recipe.name}: {s['results']['primary']}, dense vs 2:4")
    return {k: s[k] for k in ("sparsified_layers", "layers_total", "sparse_flop_share", "amdahl_bound", "amdahl_bound_likely_win")}
