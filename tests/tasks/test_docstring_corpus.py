"""The docstring corpus script: deterministic, and no evaluation text in what trains or calibrates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "data" / "make_docstring_corpus.py"


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--packages", "yaml", "rich", "--ood-size", "0", "--max-broad", "400", *extra], capture_output=True, text=True, timeout=600)


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    runs = [_run(folder / f"c{i}.json") for i in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    return [folder / f"c{i}.json" for i in range(2)]


def test_the_script_is_deterministic(two_runs):
    a, b = (p.read_bytes() for p in two_runs)
    assert a == b


def test_evaluation_splits_are_disjoint_from_training_and_calibration(two_runs):
    corpus = json.loads(two_runs[0].read_text())
    fixed = json.loads((ROOT / "benchmarks" / "data" / "stdlib_docstring_pairs.json").read_text())
    assert len(corpus["eval_large"]) == 2000 and len(corpus["heldout"]) >= 400 and corpus["broad_text"]
    train = {_normal(t) for t in fixed["train_text"]} | {_normal(t) for t in corpus["broad_text"]}
    calib = {_normal(t) for pair in fixed["calib"] for t in pair}
    evaluation = [_normal(t) for split in ("eval_large", "heldout") for pair in corpus[split] for t in pair]
    old_eval = {_normal(t) for pair in fixed["eval"] for t in pair}
    assert not set(evaluation) & (train | calib | old_eval)
    queries = [q for q, _ in corpus["eval_large"] + corpus["heldout"]]
    assert len(set(queries)) == len(queries)  # the two splits share no pair
    joined = "\n".join(corpus["broad_text"])
    assert not [e for e in evaluation if len(e) > 60 and e in joined]  # no evaluation text inside a training paragraph
    assert not [t for t in fixed["train_text"] if len(t) > 60 and any(_normal(t) in e for e in evaluation)]


def test_reserved_packages_never_train():
    r = _run(Path("/nonexistent/never.json"), "--packages", "numpy")
    assert r.returncode != 0 and "reserved for out-of-distribution evaluation" in r.stderr + r.stdout
