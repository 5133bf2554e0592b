import json

import pytest
import yaml

from sparsekit.errors import RecipeError
from sparsekit.recipe.runner import run_recipe
from sparsekit.recipe.schema import load_recipe, recipe_from_dict

BASE = {"version": 1, "name": "t", "model": {"source": "mlp"}, "sparsify": {"method": "magnitude"}, "export": {"precisions": ["fp32"]}}


def test_schema_is_strict(tmp_path):
    with pytest.raises(RecipeError, match="sparsify.methd"):
        recipe_from_dict({**BASE, "sparsify": {"methd": "magnitude"}})
    with pytest.raises(RecipeError, match="version 2"):
        recipe_from_dict({**BASE, "version": 2})
    with pytest.raises(RecipeError, match="export.precisions"):
        recipe_from_dict({**BASE, "export": {"precisions": ["fp64"]}})
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "none.yaml")


def test_canonical_json_round_trip(tmp_path):
    r = recipe_from_dict(BASE)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(json.loads(r.canonical_json())))
    assert load_recipe(path).canonical_json() == r.canonical_json()


def test_runner_skips_unchanged_and_reruns_what_changed(tmp_path):
    recipe = recipe_from_dict(BASE)
    first = run_recipe(recipe, tmp_path)
    assert [s.status for s in first.stages] == ["ran"] * 4
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"analyze", "sparsify", "export.fp32", "report"}
    second = run_recipe(recipe, tmp_path)
    assert [s.status for s in second.stages] == ["skipped"] * 4
    # adding a precision runs only the new export and the report
    third = run_recipe(recipe_from_dict({**BASE, "export": {"precisions": ["fp32", "fp16"]}}), tmp_path)
    assert {s.name: s.status for s in third.stages} == {"analyze": "skipped", "sparsify": "skipped", "export.fp32": "skipped", "export.fp16": "ran", "report": "ran"}
    # changing the sparsify settings re-runs sparsify and everything downstream of its checkpoint
    fourth = run_recipe(recipe_from_dict({**BASE, "sparsify": {"method": "magnitude", "exclude": ["body.2"]}}), tmp_path)
    assert {s.name: s.status for s in fourth.stages} == {"analyze": "skipped", "sparsify": "ran", "export.fp32": "ran", "report": "ran"}
    # a deleted artifact is rebuilt
    (tmp_path / "model.fp32.onnx").unlink()
    fifth = run_recipe(recipe_from_dict({**BASE, "sparsify": {"method": "magnitude", "exclude": ["body.2"]}}), tmp_path)
    assert {s.name: s.status for s in fifth.stages}["export.fp32"] == "ran"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sparsified_layers"] == 1 and summary["exports"]["fp32"]["check_passed"]
    assert "| `body.0` |" in (tmp_path / "summary.md").read_text()


def test_recipe_without_sparsify_exports_dense(tmp_path):
    run_recipe(recipe_from_dict({**BASE, "sparsify": None}), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sparsified_layers"] == 0 and summary["amdahl_bound"] == 1.0


def test_recipe_include_from_narrows_the_default(tmp_path):
    (tmp_path / "sel.json").write_text(json.dumps({"include": ["body.0"]}))
    run_recipe(recipe_from_dict({**BASE, "sparsify": {"method": "magnitude", "include_from": str(tmp_path / "sel.json")}}), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["sparsified_layers"] == 1
    (tmp_path / "empty.json").write_text(json.dumps({"include": []}))
    from sparsekit.errors import NoEligibleLayersError

    with pytest.raises(NoEligibleLayersError, match="includes no layer"):
        run_recipe(recipe_from_dict({**BASE, "sparsify": {"method": "magnitude", "include_from": str(tmp_path / "empty.json")}}), tmp_path / "run2")
