"""Orchestration tests of the budgeted benchmark suite, driven through the dense path on CPU.

The GPU suite (benchmarks/gpu_suite.py) can only measure 2:4 kernels on a GPU, but how it runs
(priority order, budget stops, failures recorded, the JSON rewritten after every unit, the number
of files, SIGTERM) is the same code on any machine; here it times real dense PyTorch forwards on
the CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from sparsekit.bench.harness import BenchConfig, measure_pair
from sparsekit.bench.suite import Suite
from sparsekit.models.source import load_model

REPO = Path(__file__).resolve().parents[2]
FAST = BenchConfig(rounds=2, round_seconds=0.02, min_iters=2, warmup_seconds=0.0)


class CpuRunner:
    """Dense forward of a CPU model on rotated random inputs, timed with perf_counter (ms)."""

    def __init__(self, model, spec, label: str) -> None:
        self.label, self._model, self._i = label, model, 0
        self._inputs = [spec.random(seed=i) for i in range(3)]

    def step(self) -> float:
        x = self._inputs[self._i % 3]
        self._i += 1
        start = time.perf_counter()
        with torch.no_grad():
            self._model(*x)
        return (time.perf_counter() - start) * 1e3


def dense_pair(batch: int) -> dict:
    loaded = load_model("mlp")
    spec = loaded.inputs.with_batch(batch)
    return measure_pair(CpuRunner(loaded.model, spec, "dense"), CpuRunner(loaded.model, spec, "sparse"), batch, FAST).to_dict()


class FakeClock:
    """Seconds that pass only when a unit says so: budget decisions become deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_stop_records_skipped_units_and_keeps_measured_ones(tmp_path):
    clock = FakeClock()
    suite = Suite(tmp_path, "s", budget_seconds=100, stream=open(os.devnull, "w"), clock=clock)

    def job(j):
        for batch in (1, 2, 4, 8, 16):
            def one(b=batch):
                clock.now += 30  # each unit "takes" 30 s: three fit in 100 s, the fourth would not
                return dense_pair(b)

            j.unit(f"batch {batch}", one)

    doc = suite.run([("mlp", job, 0), ("late", job, 20.0)])
    suite.close()
    units = doc["jobs"][0]["units"]
    assert [u["status"] for u in units] == ["ok", "ok", "ok", "skipped", "skipped"]
    assert "10 s left, unit needs about 30 s" in units[3]["reason"]
    assert doc["jobs"][1]["status"] == "skipped"
    on_disk = json.loads((tmp_path / "s.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["jobs"] == json.loads(json.dumps(doc["jobs"]))
    assert on_disk["jobs"][0]["units"][0]["result"]["speedup"]["rounds"] == FAST.rounds


def test_a_failing_job_is_recorded_and_the_next_job_runs(tmp_path):
    suite = Suite(tmp_path, "s", budget_seconds=60, stream=open(os.devnull, "w"))

    def broken(j):
        j.unit("batch 1", lambda: dense_pair(1))
        raise RuntimeError("model build failed: out of memory")

    def failing_unit(j):
        j.unit("bad shape", lambda: 1 / 0)
        j.unit("batch 2", lambda: dense_pair(2))

    doc = suite.run([("broken", broken, 0), ("partial", failing_unit, 0), ("fine", lambda j: j.unit("batch 4", lambda: dense_pair(4)), 0)])
    suite.close()
    broken_job, partial, fine = doc["jobs"]
    assert broken_job["status"] == "failed" and "out of memory" in broken_job["error"]["message"]
    assert broken_job["units"][0]["status"] == "ok"  # what it measured before failing is kept
    assert partial["status"] == "partial" and partial["units"][0]["error"]["type"] == "ZeroDivisionError"
    assert partial["units"][1]["status"] == "ok"
    assert fine["status"] == "ok"


def test_the_document_is_rewritten_after_every_unit_and_only_two_files_are_written(tmp_path):
    suite = Suite(tmp_path, "gpu_suite", budget_seconds=60, stream=open(os.devnull, "w"))
    seen = []

    def job(j):
        for batch in (1, 2, 4):
            def one(b=batch):
                seen.append([u["label"] for u in json.loads((tmp_path / "gpu_suite.json").read_text())["jobs"][0]["units"] if u.get("status") == "ok"])
                return dense_pair(b)

            j.unit(f"batch {batch}", one)

    suite.run([("mlp", job, 0)])
    suite.close()
    assert seen == [[], ["batch 1"], ["batch 1", "batch 2"]]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gpu_suite.json", "gpu_suite.log"]  # the device returns at most 8 files
    assert "mlp: ok" in (tmp_path / "gpu_suite.log").read_text()


def test_sigterm_ends_the_unit_as_interrupted_and_keeps_the_document(tmp_path):
    script = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from sparsekit.bench.suite import Suite
suite = Suite({str(tmp_path)!r}, "s", 60)
def job(j):
    j.unit("quick", lambda: 1)
    j.unit("slow", lambda: (print("started", flush=True), time.sleep(30)))
suite.run([("job", job, 0), ("after", lambda j: j.unit("never", lambda: 2), 0)])
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["status"].startswith("interrupted")
    assert [u["status"] for u in doc["jobs"][0]["units"]] == ["ok", "interrupted"]
    assert len(doc["jobs"]) == 1  # nothing ran after the signal


BLOCK_MODELOPT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "modelopt" or name.startswith("modelopt."):
            raise ImportError("modelopt is not installed on this machine")
sys.meta_path.insert(0, Block())
"""


def test_gpu_suite_plan_and_its_masking_path_need_no_modelopt():
    """What the GPU machine lacks (ModelOpt) is never imported by the suite's code path."""
    script = BLOCK_MODELOPT + f"""
sys.path.insert(0, {str(REPO)!r})
sys.argv = ["gpu_suite.py", "--plan"]
import runpy
try:
    runpy.run_path({str(REPO / "benchmarks" / "gpu_suite.py")!r}, run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
from sparsekit.models.source import load_model
from sparsekit.sparsify.direct import mask_weights_2to4_
from sparsekit.bench.torch_sparse import plain_model, convertible
from sparsekit.bench.torch_pair import _converted_share
loaded = load_model("bert", {{"attention": "sdpa"}})
report = mask_weights_2to4_(loaded.model, exclude=["pooler", "head"])
model = plain_model(loaded.model)
ok = [n for n, m in model.named_modules() if isinstance(m, __import__("torch").nn.Linear) and convertible(m) is None]
assert ok == report.masked, (ok, report.masked)
print("share", _converted_share(loaded, model, ok))
assert "modelopt" not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines[:15] == ["preflight", "bert-large-seq384", "bert-large-seq128", "gemm", "select", "plan-gemm", "compiled", "selection", "llm-gemm", "fp8",
                          "gemm-large", "attention-matmul", "bf16", "batch-1", "tensorrt"]
    share = float(lines[lines.index("share") + 1])
    assert 0.5 < share < 1.0  # attention and the excluded pooler/head keep it below 1


def test_a_unit_past_its_time_limit_abandons_its_job_and_the_suite_goes_on(tmp_path):
    suite = Suite(tmp_path, "s", budget_seconds=60, stream=open(os.devnull, "w"), max_unit_seconds=30)

    def stuck(j):
        j.unit("batch 1", lambda: dense_pair(1))
        j.unit("slow kernel", lambda: [time.sleep(0.05) for _ in range(400)], limit_s=0.5)
        j.unit("batch 4", lambda: dense_pair(4))  # never reached: the job is abandoned

    doc = suite.run([("stuck", stuck, 0), ("next", lambda j: j.unit("batch 2", lambda: dense_pair(2)), 0)])
    suite.close()
    stuck_job, nxt = doc["jobs"]
    assert [u["status"] for u in stuck_job["units"]] == ["ok", "timed-out"]
    assert stuck_job["status"] == "failed" and stuck_job["error"]["type"] == "UnitTimeout"
    assert stuck_job["units"][1]["seconds"] < 5
    assert nxt["status"] == "ok"
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # handlers restored
