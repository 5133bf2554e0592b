"""benchmarks/own_data.py's committed result: its page is what its JSON says, the comparison's
interval checks decide "within", and the JSON names no path of the machine it ran on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "benchmarks" / "results" / "own_data.json"
_spec = importlib.util.spec_from_file_location("own_data_script", ROOT / "benchmarks" / "own_data.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_the_committed_page_renders_from_the_committed_json():
    report = json.loads(RESULT.read_text(encoding="utf-8"))
    assert not report["quick"]
    assert script.render_markdown(report) == RESULT.with_suffix(".md").read_text(encoding="utf-8")
    text = RESULT.read_text(encoding="utf-8")
    assert "/home/" not in text and "/work/" not in text and "site-packages" not in text


def test_a_sparse_row_is_within_when_its_difference_to_dense_lies_in_the_builtin_interval():
    builtin = {"name": "b", "metrics": {"recall@1": 27.0}, "diff": {"diff": -3.0, "low": -4.2, "high": -1.7}}
    generic = {"recall@1": 26.5, "recall@1_low": 24.6, "recall@1_high": 28.4, "recall@1_vs_dense": -3.5, "recall@1_vs_dense_low": -4.8, "recall@1_vs_dense_high": -2.2}
    row = script.compare("r", generic, builtin, None)
    assert row["within_builtin_interval"] and row["difference"] == -0.5 and row["builtin_in_generic_interval"]
    row = script.compare("r", {**generic, "recall@1_vs_dense": -4.5}, builtin, None)
    assert not row["within_builtin_interval"]


def test_the_dense_row_is_within_when_its_paired_interval_holds_zero():
    builtin = {"name": "dense", "metrics": {"recall@1": 30.0}, "diff": None}
    generic = {"recall@1": 30.0, "recall@1_low": 28.0, "recall@1_high": 32.0}
    assert script.compare("dense", generic, builtin, {"diff": 0.0, "low": 0.0, "high": 0.0})["within_builtin_interval"]
    assert not script.compare("dense", generic, builtin, {"diff": 0.6, "low": 0.1, "high": 1.1})["within_builtin_interval"]
