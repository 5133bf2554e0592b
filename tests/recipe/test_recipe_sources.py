"""Recipes and the models users bring: paths read from the recipe's folder, stage keys that follow
the content of the model's source and data files, the documented schema, and ``run --report``."""

import json
import shutil

import pytest
import yaml

from sparsekit.recipe.fingerprint import source_fingerprint
from sparsekit.recipe.runner import run_recipe
from sparsekit.recipe.schema import load_recipe, recipe_schema
from sparsekit.recipe.stages import STAGES
from tests.conftest import DATA
from tests.models.conftest import frozen_import_heap, one_torch_thread  # noqa: F401 - fixtures used below

pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")


def _project(tmp_path):
    """A project folder with its own factory file, calibration data and recipe (relative paths)."""
    import torch

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(DATA / "user_model.py", project / "model.py")
    torch.save(torch.randn(8, 16, 12, 12), project / "calib.pt")
    recipe = {
        "version": 1, "name": "own", "model": {"source": "model.py:build", "args": {"width": 32}},
        "sparsify": {"method": "sparsegpt", "calib": "calib.pt", "calib_samples": 8}, "export": {"precisions": ["fp32"]},
    }
    (project / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return project


def test_relative_paths_and_source_content_decide_what_runs(tmp_path, monkeypatch):
    project = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recipe's paths are read from its own folder, not the working one
    recipe = load_recipe(project / "recipe.yaml")
    assert recipe.model.source == f"{project / 'model.py'}:build" and recipe.sparsify.calib == str(project / "calib.pt")
    run = tmp_path / "run"
    assert [s.status for s in run_recipe(recipe, run).stages] == ["ran"] * 4
    assert [s.status for s in run_recipe(load_recipe(project / "recipe.yaml"), run).stages] == ["skipped"] * 4
    # new weights in the factory file: every stage that reads the model runs again
    source = (project / "model.py").read_text()
    (project / "model.py").write_text(source.replace("def build(width: int = 128):", "def build(width: int = 128):\n    import torch\n    torch.manual_seed(7)"))
    statuses = {s.name: s.status for s in run_recipe(load_recipe(project / "recipe.yaml"), run).stages}
    assert statuses == {"analyze": "ran", "sparsify": "ran", "export.fp32": "ran", "report": "ran"}
    # new calibration data: sparsify (and what reads its checkpoint) runs again, analyze does not
    import torch

    torch.save(torch.randn(8, 16, 12, 12), project / "calib.pt")
    statuses = {s.name: s.status for s in run_recipe(load_recipe(project / "recipe.yaml"), run).stages}
    assert statuses["analyze"] == "skipped" and statuses["sparsify"] == "ran"


def test_hf_folder_content_is_part_of_the_key(tmp_path):
    pytest.importorskip("transformers")
    from tests.data import hf_factories

    spec = hf_factories.save_folder("bert", tmp_path / "bert")
    before = source_fingerprint(spec)
    assert "config.json" in before and any(name.endswith(".safetensors") for name in before)
    model, _ = hf_factories.bert_classifier()
    with __import__("torch").no_grad():
        model.classifier.bias.add_(1.0)
    model.save_pretrained(str(tmp_path / "bert"))
    after = source_fingerprint(spec)
    assert after["config.json"] == before["config.json"] and after != before
    settings = [s.settings for s in STAGES if s.name == "analyze"][0]
    from sparsekit.recipe.schema import recipe_from_dict

    assert settings(recipe_from_dict({"model": {"source": spec}}))["model"]["content"] == after


def test_schema_documents_every_field():
    schema = recipe_schema()
    undocumented = []
    for name, node in [("Recipe", schema), *schema["$defs"].items()]:
        assert node.get("description"), name
        undocumented += [f"{name}.{key}" for key, prop in node.get("properties", {}).items() if not prop.get("description")]
    assert not undocumented
    assert {"seq_len", "dynamic_axes", "input_shapes"} <= set(schema["$defs"]["ModelConfig"]["properties"])


def test_run_report_and_schema_commands(cli, tmp_path):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"version": 1, "name": "r", "model": {"source": "mlp", "args": {"hidden": 64}}, "sparsify": {"method": "magnitude"}, "export": {"precisions": ["fp32"]}}))
    proc = cli("run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--report", str(tmp_path / "report.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["analyze", "sparsify", "export.fp32", "report"]
    assert report["summary"]["sparsified_layers"] >= 1
    proc = cli("run", "--schema")
    assert proc.returncode == 0 and json.loads(proc.stdout)["title"] == "Recipe"
