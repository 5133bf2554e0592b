"""benchmarks/reconstruct.py's target and page: the fastest row within 1 point decides, whichever
model (one-shot, reconstructed, distilled) it is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reconstruct_script", ROOT / "benchmarks" / "reconstruct.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def _row(start: str, speedup: float, model: str, diff: float) -> dict:
    return {"start": start, "layers": 30, "speedup_ideal": speedup, "model": model, "metrics": {"recall@1": 30 + diff, "fidelity": 0.9},
            "diff": {"diff": diff, "low": diff - 1.3, "high": diff + 1.3}, "robustness": {}, "wall_s": 60, "cpu_s": 100}


def test_the_target_is_the_fastest_row_within_one_point():
    rows = [_row("all", 1.9, "one-shot", -3.0), _row("all", 1.9, "reconstructed", -1.9), _row("p3", 1.63, "one-shot", -2.6), _row("p3", 1.63, "reconstructed", -0.9)]
    ((what, met, detail),) = script.targets(rows)
    assert met and "p3 (reconstructed), 1.63x ideal" in detail and "1.6x" in what
    rows[-1]["diff"]["diff"] = -1.2
    ((_, met, detail),) = script.targets(rows)
    assert not met and detail == "no measured model within 1 point"
    rows.append(_row("p7", 1.27, "one-shot", -0.1))
    ((_, met, detail),) = script.targets(rows)
    assert not met and "p7 (one-shot), 1.27x" in detail


def test_the_page_lists_every_row_and_the_target():
    rows = [_row("all", 1.9, "one-shot", -3.0), _row("all", 1.9, "reconstructed", -1.9)]
    report = {"machine": {"cpu": "x", "cores": 2, "memory_gib": 1, "versions": {"torch": "t"}}, "command": "c", "complete": True, "dense": {"recall@1": 30.0},
              "dense_splits": {"heldout": {"recall@1": 40.0}, "ood": {"recall@1": 49.0}}, "settings": {"steps": 150, "lr": 2e-4, "samples": 512}, "rows": rows,
              "targets": script.targets(rows)}
    page = script.render_markdown(report)
    assert page.count("| all |") == 2 and "-1.90 [-3.20, -0.60]" in page and "MISSED" in page


def test_the_committed_page_renders_from_the_committed_json():
    import json

    result = ROOT / "benchmarks" / "results" / "reconstruct.json"
    report = json.loads(result.read_text(encoding="utf-8"))
    assert report["complete"] and any("distilled" in r["model"] for r in report["rows"])
    assert script.render_markdown(report) == result.with_suffix(".md").read_text(encoding="utf-8")
