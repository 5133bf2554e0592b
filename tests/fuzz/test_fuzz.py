"""Property-based fuzzing of every kind of file the kit reads (Hypothesis, seeded and deterministic).

Each target takes a real file the kit wrote (a zoo MLP checkpoint, a pruned and a factorised one,
a one-layer BERT ``save_pretrained`` folder, a recipe, an fp32 ONNX export, a training state, a
``loop.json`` work folder), mutates a copy (hostile model sources and arguments, architecture
edits, input specs, ModelOpt states, weights of wrong shapes, dtypes and strides; config.json
values; recipe values, YAML tags and alias bombs; ONNX bytes, dims, dtypes, data lengths,
external-data locations, ops, subgraphs, metadata; resume files; ``--data`` CSV / JSONL bytes,
columns, cell values and encodings, image folders with broken, huge-declaring and linked files) and
runs what reads it. For every
case (:mod:`tests.fuzz.harness`): success, or exit 2 with one ``sparsekit: error:`` line; no file
outside the output folder; no sentinel; no process spawned and no payload module imported.

Memory bound: every case runs in ONE child process (:mod:`tests.fuzz.runner`) started with
``RLIMIT_AS`` = 6 GiB. Tried first, as the simplest hard bound, and it works: torch (with its
OpenBLAS/OpenMP pools at one thread), ONNX Runtime, ModelOpt and transformers start and run under
it (they also ran under 4 GiB); peak RSS of the whole run is ~0.65 GB. A file that made the kit
allocate past the limit would end in a MemoryError, reported as an internal error, instead of
swapping the machine. On top of the hard limit, the runner records each case's growth of the peak
RSS and reports any case that grows it by more than 1 GiB, and this module asserts the child's
peak RSS stays under :data:`PEAK_RSS_MB`.

Runtime: about 660 cases; the whole tests/fuzz folder takes 25-50 s on a shared 2-core machine
(imports and seeds ~6-10 s of it). Set
``SPARSEKIT_FUZZ_SCALE=5`` to run five times the cases (the same seed: a superset of them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
PEAK_RSS_MB = 2048
"""Largest peak RSS of the fuzz process: ~0.65 GB measured, and nothing a case reads may add gigabytes."""
TARGETS = ("checkpoint", "hf_config", "recipe", "onnx", "training_state", "loop_json", "data")


@pytest.fixture(scope="module")
def fuzz_report(tmp_path_factory) -> dict:
    """Run every target in one child process (address space limited) and return its JSON report."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tmp").mkdir()
    report = tmp_path_factory.mktemp("fuzz-report") / "report.json"
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        # temp files and caches inside the watched root: a file the kit leaves anywhere is seen
        "TMPDIR": str(root / "tmp"), "HF_HOME": str(root / "hf_home"), "XDG_CACHE_HOME": str(root / "cache"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.runner", str(root), str(report)], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize("target", TARGETS)
def test_mutated_files_are_read_or_refused_in_one_line(fuzz_report, target):
    result = fuzz_report["targets"][target]
    assert result["examples"] >= 20, result  # the target really ran its cases
    assert result["ok"], f"{target}:\n{result['error']}"


def test_the_fuzz_process_ran_under_a_memory_bound(fuzz_report):
    assert fuzz_report["rlimit_as"] == 6 << 30
    assert 0 < fuzz_report["peak_rss_mb"] < PEAK_RSS_MB, fuzz_report["peak_rss_mb"]


def test_the_cases_reach_both_success_and_refusal(fuzz_report):
    """A fuzzer whose every case is refused at the first check tests little: each CLI target has
    cases that succeed and cases that are refused."""
    for target in ("checkpoint", "hf_config", "recipe", "onnx", "data"):
        outcomes = fuzz_report["targets"][target]["outcomes"]
        assert outcomes.get("0", 0) > 0 and outcomes.get("2", 0) > 0, (target, outcomes)
