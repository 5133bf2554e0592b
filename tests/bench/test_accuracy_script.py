"""The accuracy benchmark script runs end to end (digits, quick settings) and evaluates its targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_accuracy_script_quick_digits(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--tasks", "digits", "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "accuracy.json").read_text())
    rows = report["results"][0]["rows"]
    names = [x["name"].strip() for x in rows]
    assert names[0].startswith("dense") and "+ INT8 QAT" in names and any("perm" in n for n in names)
    assert all(x["diff"] is not None for x in rows[1:]) and rows[0]["diff"] is None
    qat = rows[-1]["extra"]["export"]
    assert qat["check_passed"] and qat["onnx_2to4_layers"] == qat["onnx_required_layers"] == 8
    ft = next(x for x in rows if "fine-tune" in x["name"])
    assert len(ft["extra"]["epoch_metrics"]) == report["results"][0]["settings"]["ft_epochs"]
    assert ft["extra"]["epoch_metrics"][-1]["accuracy"] == pytest.approx(ft["metrics"]["accuracy"], abs=1e-3)  # the last epoch's evaluation is the row's
    md = (tmp_path / "accuracy.md").read_text()
    assert "After each training epoch" in md
    assert "| dense (trained here) |" in md and ("MET" in md or "MISSED" in md)
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # --update replaces only the tasks it runs, and each task keeps the command that measured it
    before = report["results"][0]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--tasks", "digits32", "--quick", "--update", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    merged = json.loads((tmp_path / "accuracy.json").read_text())
    assert [x["task"] for x in merged["results"]] == ["digits", "digits32"] and merged["results"][0] == before
    assert all(x["complete"] for x in merged["results"]) and "--update" in merged["results"][1]["command"] and "--update" not in before["command"]
    assert set(merged["targets"]) == {"digits", "digits32"}
    md = (tmp_path / "accuracy.md").read_text()
    assert md.count("Command: `python benchmarks/accuracy.py") == 2 and "## digits32:" in md
