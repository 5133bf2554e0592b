"""``sparsekit plan`` on a crafted model whose answer is known: two wide layers whose weights are
already 2:4 (2:4 costs them nothing) and a narrow head whose 2:4 costs accuracy but saves little
time. The plan must keep the head dense first, stop there, and hand sparsify the two wide layers."""

from __future__ import annotations

import json
import math

import pytest

from sparsekit.plan.speed_table import SpeedEstimate
from sparsekit.plan.trade import LayerTrade, expected_speedup, keep_dense_order

CRAFTED = '''
import torch
import torch.nn.functional as F
from torch import nn
from sparsekit.tasks.base import EvalResult, Task


class Crafted(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.wide1 = nn.Linear(64, 512)
        self.wide2 = nn.Linear(512, 64)
        self.head = nn.Linear(64, 16)
        with torch.no_grad():
            for layer in (self.wide1, self.wide2, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
                layer.bias.zero_()
            for layer in (self.wide1, self.wide2):  # already 2:4: a 2:4 mask keeps exactly these
                w = layer.weight.view(layer.weight.shape[0], -1, 4)
                w[:, :, 2:] = 0

    def forward(self, x):
        return self.head(F.relu(self.wide2(F.relu(self.wide1(x)))))


def make_model():
    return Crafted().eval()


class CraftedTask(Task):
    name = "crafted"
    primary = "accuracy"
    model = ("", {})

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(600, 64, generator=g)
        with torch.no_grad():
            self.y = make_model()(self.x).argmax(1)

    def calibration(self, samples, batch_size=16):
        return [(self.x[i : i + batch_size],) for i in range(0, min(samples, 400), batch_size)]

    def train_batches(self, batch_size, seed=0):
        return lambda epoch: [((self.x[i : i + batch_size],), self.y[i : i + batch_size]) for i in range(0, 400, batch_size)]

    def task_loss(self, model, batch):
        return F.cross_entropy(model(*batch[0]), batch[1])

    def evaluate(self, model, reference=None):
        model.eval()
        with torch.no_grad():
            out = model(self.x[400:])
        hits = (out.argmax(1) == self.y[400:]).double().numpy()
        metrics = {"accuracy": 100.0 * float(hits.mean())}
        if reference is not None:
            metrics["agreement"] = 100.0 * float((out.argmax(1).numpy() == reference.outputs.argmax(1)).mean())
        return EvalResult(metrics, hits, out.numpy())


def make_task():
    return CraftedTask()
'''


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    path = tmp_path_factory.mktemp("crafted") / "crafted.py"
    path.write_text(CRAFTED)
    return path


def _trade(name: str, share: float, ratio: float, cost: float) -> LayerTrade:
    return LayerTrade(name, share, (8, 64, 64), SpeedEstimate(ratio, "test"), cost)


def test_the_order_keeps_dense_first_the_layer_losing_most_per_time_saved():
    trades = [_trade("big_cheap", 0.5, 2.0, 1.0), _trade("small_costly", 0.05, 2.0, 0.8), _trade("mid", 0.3, 2.0, 1.2), _trade("slow", 0.1, 0.9, 0.0)]
    order, never = keep_dense_order(trades)
    # per unit of time saved: small_costly 0.8/0.025 = 32, mid 1.2/0.15 = 8, big_cheap 1.0/0.25 = 4
    assert order == ["small_costly", "mid", "big_cheap"]
    assert never == ["slow"] and math.isinf(trades[3].cost_per_time)
    by_name = {t.name: t for t in trades}
    assert expected_speedup(by_name, ["big_cheap"]) == pytest.approx(1 / (1 - 0.25))
    assert expected_speedup(by_name, ["slow"]) < 1.0  # a slower 2:4 GEMM loses time


def test_plan_keeps_the_costly_narrow_layer_dense_and_its_list_round_trips_into_sparsify(crafted, tmp_path, cli):
    model, task, out = f"{crafted}:make_model", f"{crafted}:make_task", tmp_path / "plan"
    r = cli("plan", model, "--input-shape", "x:8x64", "--task", task, "-o", str(out), "--method", "magnitude", "--distill-points", "1", "--max-drop", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["order"][0] == "model.head" or plan["order"][0].endswith("head"), plan["order"]
    trades = {t["name"]: t for t in plan["trades"]}
    head = next(n for n in trades if n.endswith("head"))
    assert trades[head]["cost"] > 1.0 and all(trades[n]["cost"] == 0 for n in trades if n != head)
    first = plan["points"][0]
    assert len(first["sparse"]) == 3 and first["diff"]["diff"] < -1.0 and first["frontier"]
    chosen = plan["points"][plan["chosen"]]
    assert sorted(plan["include"]) == sorted(n for n in trades if n != head) == sorted(chosen["sparse"])
    assert chosen["diff"]["diff"] == 0 and chosen["speedup"] > 1.5 and chosen["speedup"] == chosen["speedup_ideal"]
    assert first["distilled"] is not None and first["distilled"]["steps"] > 0  # the faster frontier point was distilled
    assert plan["points"][-1]["step"] == "dense" and plan["points"][-1]["speedup"] == 1.0
    for name in ("plan.json", "plan.md", "plan.png"):
        assert (out / name).stat().st_size > 0
    assert "**Chosen**" in (out / "plan.md").read_text()

    r = cli("sparsify", model, "--input-shape", "x:8x64", "--include-from", str(out / "plan.json"), "-o", str(tmp_path / "s.pt"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    sparsified = sorted(x["name"] for x in report["layers"] if x["status"] == "sparsified")
    assert sparsified == sorted(plan["include"])


def test_a_measured_table_keeps_a_slower_layer_dense_at_every_point(crafted, tmp_path, cli):
    table = tmp_path / "select.json"
    rows = [{"name": "a", "m": 8, "k": 64, "n": 512, "speedup": {"ratio": 1.5}}, {"name": "b", "m": 8, "k": 512, "n": 64, "speedup": {"ratio": 0.8}}, {"name": "c", "m": 8, "k": 64, "n": 16, "speedup": {"ratio": 1.2}}]
    table.write_text(json.dumps({"dtype": "float16", "measurements": rows}))
    r = cli("plan", f"{crafted}:make_model", "--input-shape", "x:8x64", "--task", f"{crafted}:make_task", "-o", str(tmp_path / "p"), "--method", "magnitude", "--distill-points", "0", "--speed", str(table), "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [n.rsplit(".", 1)[-1] for n in plan["never"]] == ["wide2"]
    assert all(not any(n.endswith("wide2") for n in p["sparse"]) for p in plan["points"])
    wide1 = next(t for t in plan["trades"] if t["name"].endswith("wide1"))
    assert wide1["speed"] == {"ratio": 1.5, "how": "measured"}
    chosen = plan["points"][plan["chosen"]]
    assert chosen["speedup"] < chosen["speedup_ideal"]  # measured 1.5x < the ideal 2x
    assert "wide2" in "".join(plan["exclude"])


def test_refinement_evaluates_candidates_and_reaches_the_same_answer(crafted):
    from sparsekit.models.source import load_model
    from sparsekit.models.trust import trust_sources
    from sparsekit.plan.config import PlanConfig
    from sparsekit.plan.planner import plan_sparsity
    from sparsekit.tasks import user_task

    with trust_sources(f"{crafted}:make_model", f"{crafted}:make_task"):
        loaded = load_model(f"{crafted}:make_model", input_shapes=["x:8x64"])
        task = user_task(f"{crafted}:make_task")
    report = plan_sparsity(loaded, task, PlanConfig(method="magnitude", refine=3, distill_points=0, max_drop=0.5))
    assert report.points[1].step.startswith("+ keep") and "refined over 3" in report.points[1].step
    assert [n.rsplit(".", 1)[-1] for n in report.points[1].kept_dense] == ["head"]
    assert report.evaluations >= 3 + 3  # three layers alone, then the all-2:4 point and its refinement candidates


def test_the_readme_flow_on_the_trained_digits_cnn(digits_dense, tmp_path, cli):
    _, _, dense = digits_dense
    out = tmp_path / "plan"
    r = cli("plan", str(dense), "--task", "digits", "-o", str(out), "--max-drop", "0.5", "--batch", "32", "--points", "4", "--distill-points", "1", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    chosen = plan["points"][plan["chosen"]]
    assert chosen["loss"] <= 0.5 and chosen["best"] in ("one-shot", "distilled")
    assert len(plan["points"]) <= 4 + 1 and plan["points"][0]["speedup_ideal"] > 1.5
    assert all(t["speed"]["how"] == "ideal" for t in plan["trades"])
    if plan["include"]:
        r = cli("sparsify", str(dense), "--include-from", str(out / "plan.json"), "-o", str(tmp_path / "s.pt"), "--json")
        assert r.returncode == 0, r.stderr
        assert sorted(x["name"] for x in json.loads(r.stdout)["layers"] if x["status"] == "sparsified") == sorted(plan["include"])


def test_plan_on_your_own_data(tmp_path, cli):
    from tests.data_sources import files

    csv = files.digits_csv(tmp_path / "d.csv", 200)
    spec, args = files.DIGITS_MODEL
    model_args = [x for k, v in args.items() for x in ("--model-arg", f"{k}={v}")]
    r = cli("plan", spec, *model_args, "--data", str(csv), "-o", str(tmp_path / "p"), "--points", "2", "--distill-points", "0", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["primary"] == "accuracy" and plan["points"][0]["diff"] is not None and (tmp_path / "p" / "plan.png").exists()


def test_a_point_stands_for_its_better_model_and_says_which():
    from sparsekit.plan.planner import PlanPoint, best_of

    one_shot, better, worse, best = ({"diff": d, "low": d - 1, "high": d + 1} for d in (-1.05, -0.4, -2.05, -0.1))
    assert best_of(one_shot, ("distilled", {"diff": better})) == ("distilled", better)
    assert best_of(one_shot, ("distilled", {"diff": worse})) == ("one-shot", one_shot), "a distillation that lost points does not stand for the point"
    assert best_of(one_shot, ("reconstructed", {"diff": best}), ("distilled", {"diff": better})) == ("reconstructed", best)
    assert best_of(one_shot, ("reconstructed", None), ("distilled", None)) == ("one-shot", one_shot) and best_of(None) == ("one-shot", None)
    p = PlanPoint(["a"], [], "all 2:4", 1.5, 1.5, {}, one_shot, distilled={"diff": worse, "metrics": {}})
    assert p.best == "one-shot" and p.loss == pytest.approx(1.05)
    p.distilled = {"diff": better, "metrics": {}}
    assert p.best == "distilled" and p.loss == pytest.approx(0.4)
    p.reconstructed = {"diff": best, "metrics": {}}
    assert p.best == "reconstructed" and p.loss == pytest.approx(0.1)


def test_the_fastest_points_are_reconstructed_block_by_block(tmp_path, cli, crafted):
    from tests.data_sources import files
    from tests.tasks.test_data_task import _tiny_bert

    text = files.docstrings_text(tmp_path / "t.txt", 64)
    folder = _tiny_bert(tmp_path / "bert", text)
    r = cli("plan", f"hf:{folder}", "--seq-len", "16", "--data", str(text), "--max-length", "16", "-o", str(tmp_path / "p"), "--points", "2", "--max-drop", "0",
            "--distill-points", "1", "--distill-epochs", "0", "--reconstruct-steps", "20", "--reconstruct-lr", "1e-3", "--reconstruct-samples", "32", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    done = [p for p in plan["points"] if p["reconstructed"]]
    assert len(done) == 1 and done[0]["distilled"] is None and done[0]["sparse"], "one point reconstructed, none distilled (--distill-epochs 0)"
    rec = done[0]["reconstructed"]
    assert rec["steps"] == 20 and rec["blocks"] and all(b["error_after"] < b["error_before"] for b in rec["blocks"])
    assert rec["metrics"]["cosine"] > done[0]["metrics"]["cosine"], "reconstruction moves the model toward the dense one"
    assert done[0]["best"] in ("one-shot", "reconstructed") and "reconstructed" in (tmp_path / "p" / "plan.md").read_text()

    r = cli("plan", f"{crafted}:make_model", "--input-shape", "x:8x64", "--task", f"{crafted}:make_task", "-o", str(tmp_path / "q"), "--reconstruct-steps", "5")
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "no blocks" in lines[0] and not (tmp_path / "q").exists()
