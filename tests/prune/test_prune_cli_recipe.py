"""``sparsekit prune`` and the stacked recipe (channel pruning -> 2:4 -> INT8 QAT -> export), run as a user would."""

from __future__ import annotations

import json

import pytest
import yaml

from sparsekit.errors import RecipeError
from sparsekit.recipe.schema import recipe_from_dict


def test_stacked_recipe_exports_narrower_int8_onnx_that_passes_check(digits_dense, tmp_path, cli):
    import onnx

    _, dense, path = digits_dense
    recipe = {
        "version": 1, "name": "stacked", "model": {"source": str(path)}, "task": "digits",
        "prune": {"granularity": "channel", "schedule": [0.25, 0.5], "epochs": 1, "batch_size": 64, "max_drop": 5.0},
        "sparsify": {"method": "magnitude", "exclude": ["head"]},
        "finetune": {"epochs": 1, "lr": 3e-5, "batch_size": 64, "quantize": "int8"},
        "export": {"precisions": ["int8"]},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    run = cli("run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    onnx_path = tmp_path / "run" / "model.int8.onnx"
    check = cli("check", str(onnx_path), "--require-eligible", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    required = [layer for layer in report["layers"] if layer["required"]]
    assert len(required) >= 8 and all(layer["is_2to4"] for layer in required)
    # the ONNX has the narrower widths: every conv weight is at most half as wide as the dense model's
    graph = onnx.load(str(onnx_path)).graph
    widths = {i.name: i.dims[0] for i in graph.initializer if len(i.dims) == 4}
    dense_widths = [m.out_channels for m in dense.model.modules() if hasattr(m, "out_channels")]
    assert widths and max(widths.values()) <= max(dense_widths) // 2
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "Pruned (channel)" in summary and "int8 QAT" in summary
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    order = ["prune", "analyze", "sparsify", "finetune", "export.int8", "report"]
    assert set(manifest["stages"]) == set(order)
    ran = [line.split(":")[0].strip() for line in run.stderr.splitlines() if line.strip().endswith(": running")]
    assert ran == order, run.stderr
    again = cli("run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"))
    assert again.returncode == 0 and again.stderr.count("unchanged, skipped") == 6, again.stderr


def test_recipe_rules_for_the_new_stages():
    base = {"version": 1, "model": {"source": "cnn"}}
    with pytest.raises(RecipeError, match="need a 'task'"):
        recipe_from_dict({**base, "finetune": {"epochs": 1}})
    with pytest.raises(RecipeError, match="need a 'task'"):
        recipe_from_dict({**base, "prune": {"schedule": [0.25]}})
    with pytest.raises(RecipeError, match=r"export.precisions to \[int8\]"):
        recipe_from_dict({**base, "task": "digits", "finetune": {"quantize": "int8"}})
    with pytest.raises(RecipeError, match="increasing"):
        recipe_from_dict({**base, "task": "digits", "prune": {"schedule": [0.5, 0.25]}})
    with pytest.raises(RecipeError, match="prune.granularity"):
        recipe_from_dict({**base, "prune": {"granularity": "filters"}})


def test_prune_cli_reports_and_refuses(tmp_path, cli):
    out = cli("prune", "cnn", "-o", str(tmp_path / "c.pt"), "--ratio", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["channels"]
    assert report["params"][1] < report["params"][0] and report["layers"]["stages.0.conv1.0"] == [64, 32]
    un = cli("prune", "mlp", "-o", str(tmp_path / "u.pt"), "--granularity", "unstructured", "--amount", "0.5")
    assert un.returncode == 0 and "no GPU speedup" in un.stdout
    lr = cli("prune", "bert", "-o", str(tmp_path / "l.pt"), "--granularity", "low-rank", "--rank-fraction", "0.25", "--json")
    assert lr.returncode == 0 and json.loads(lr.stdout)["low_rank"]["layers"]
    for args, message in (
        (["cnn", "--ratio", "1.5"], "invalid --ratio: Input should be less than 1"),
        (["bert", "--importance", "bn"], "no BatchNorm layer"),
        (["cnn", "--importance", "taylor"], "needs gradients"),
        (["cnn", "--layer-ratio", "stem"], "is not PATTERN=R"),
        ([], "needs a MODEL"),
    ):
        bad = cli("prune", *args, "-o", str(tmp_path / "bad.pt"))
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
        assert not (tmp_path / "bad.pt").exists()
    assert cli("sparsify", "cnn", "-o", str(tmp_path / "s.pt")).returncode == 0
    late = cli("prune", str(tmp_path / "s.pt"), "-o", str(tmp_path / "late.pt"))
    assert late.returncode == 2 and "already 2:4-sparsified" in late.stderr and "prune the dense model first" in late.stderr
    exists = cli("prune", "cnn", "-o", str(tmp_path / "c.pt"))
    assert exists.returncode == 2 and "--force" in exists.stderr
