"""The README's measured numbers are rendered from the committed results: the README and the JSON
agree, and a changed result changes the sentence (so the check can fail)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "benchmarks" / "readme_numbers.py")
readme_numbers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_numbers)


def test_the_readme_states_what_the_committed_results_say():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_numbers.render(readme) == readme, "run: python benchmarks/readme_numbers.py"
    assert readme_numbers.main(["--check"]) == 0


def test_a_changed_result_changes_the_readme_sentence(tmp_path):
    doc = json.loads(readme_numbers.H200.read_text(encoding="utf-8"))
    before = readme_numbers.h200_paragraph(doc)
    changed = copy.deepcopy(doc)
    for job in changed["jobs"]:
        if job["name"] == "gemm":
            for unit in job["units"]:
                if unit["label"].startswith("bert-base ffn_out") and unit["label"].endswith("M=16384"):
                    unit["result"]["speedup"]["ratio"] = 1.42
    after = readme_numbers.h200_paragraph(changed)
    assert "ffn_out 0.86x" in before and "ffn_out 1.42x" in after
    path = tmp_path / "g.json"
    path.write_text(json.dumps(changed))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_numbers.render(readme, {"h200": (path, readme_numbers.h200_paragraph)}) != readme


def test_a_missing_block_is_an_error():
    with pytest.raises(ValueError, match="numbers:h200"):
        readme_numbers.render("no markers here")


def test_a_changed_accuracy_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.ACCURACY.read_text(encoding="utf-8"))
    before = readme_numbers.accuracy_paragraph(doc)
    changed = copy.deepcopy(doc)
    ds = next(r for r in changed["results"] if r["task"] == "docstrings")
    row = next(r for r in ds["rows"] if "broad text, fixed masks" in r["name"])
    row["metrics"]["fidelity"] = 0.9612
    row["extra"]["robustness"]["ood"]["diff"].update(diff=-2.5, low=-4.0, high=-1.0)
    after = readme_numbers.accuracy_paragraph(changed)
    assert "fidelity 0.945" in before and "intervals spanning 0" in before
    assert "fidelity 0.961" in after and "intervals spanning 0" not in after and "-2.5 points" in after


def test_a_changed_plan_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.PLAN.read_text(encoding="utf-8"))
    before = readme_numbers.plan_paragraph(doc)
    changed = copy.deepcopy(doc)
    ideal = next(r for r in changed["results"] if r["task"] == "docstrings")["plans"]["ideal"]
    ideal["chosen"] = 0
    ideal["points"][0]["distilled"]["diff"].update(diff=-0.4, low=-1.2, high=0.3)
    after = readme_numbers.plan_paragraph(changed)
    assert before != after and "every layer 2:4 is within 1 point of dense" in after.split("- docstrings")[1].split("\n")[0]


def test_a_changed_schedule_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.SCHEDULE.read_text(encoding="utf-8"))
    before = readme_numbers.schedule_sentence(doc)
    changed = copy.deepcopy(doc)
    changed["epochs"][-1]["metrics"]["fidelity"] = 0.9612
    after = readme_numbers.schedule_sentence(changed)
    assert "fidelity 0.951" in before and "fidelity 0.961" in after


def test_a_changed_learned_mask_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.LEARNED.read_text(encoding="utf-8"))
    before = readme_numbers.learned_sentence(doc)
    changed = copy.deepcopy(doc)
    changed["masks"]["frozen_at"] = 123
    changed["epochs"][-1]["diff"].update(diff=-1.5, low=-2.8, high=-0.2)
    after = readme_numbers.learned_sentence(changed)
    assert "frozen at step 406" in before and "frozen at step 123" in after and "-1.5 [-2.8, -0.2]" in after


def test_a_changed_reconstruction_result_changes_the_readme_paragraph():
    doc = json.loads(readme_numbers.RECONSTRUCT.read_text(encoding="utf-8"))
    before = readme_numbers.reconstruct_paragraph(doc)
    changed = copy.deepcopy(doc)
    changed["rows"][0]["diff"].update(diff=-0.5, low=-1.5, high=0.5)
    changed["targets"] = [["the target", True, "detail"]]
    after = readme_numbers.reconstruct_paragraph(changed)
    assert before != after and "-0.5 [-1.5, +0.5]" in after and "Target met: the target (detail)." in after


def test_a_changed_own_data_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.OWN_DATA.read_text(encoding="utf-8"))
    before = readme_numbers.own_data_sentence(doc)
    changed = copy.deepcopy(doc)
    last = changed["rows"][-1]
    last["vs_dense"] = {"diff": -9.0, "low": -10.5, "high": -7.5}
    last["within_builtin_interval"] = False
    after = readme_numbers.own_data_sentence(changed)
    assert before != after and "-9.0 [-10.5, -7.5]" in after
    assert f"Outside the built-in row's 95% interval: {last['row']}." in after


def test_a_changed_points_distilled_result_changes_the_readme_sentence():
    doc = json.loads(readme_numbers.RECONSTRUCT_POINTS.read_text(encoding="utf-8"))
    before = readme_numbers.points_distilled_sentence(doc)
    changed = copy.deepcopy(doc)
    for row in changed["rows"]:
        if "distilled" in row["model"]:
            row["metrics"]["fidelity"] = 0.5
    after = readme_numbers.points_distilled_sentence(changed)
    assert before != after and "-> 0.500" in after and "did not move apart" in after
