"""The run summary's results: dense vs one-shot 2:4 vs recovered vs INT8 (PTQ as exported, or the
QAT model), each with its metric, interval, fidelity, steps and minutes, in summary.json / .md and
summary.png, on the digits task from a trained dense checkpoint."""

from __future__ import annotations

import json

import numpy as np

from sparsekit.recipe.runner import run_recipe
from sparsekit.recipe.schema import recipe_from_dict

PNG = b"\x89PNG\r\n\x1a\n"


def _recipe(dense_path, **stages) -> dict:
    return {"version": 1, "name": "digits-summary", "task": "digits", "model": {"source": str(dense_path)}, "sparsify": {"method": "magnitude"}, **stages}


def test_ptq_row_matches_the_exported_int8_onnx_and_the_plot_has_epochs(digits_dense, tmp_path):
    import onnxruntime as ort

    task, _, dense_path = digits_dense
    recipe = recipe_from_dict(_recipe(dense_path, finetune={"epochs": 2, "lr": 1e-3, "batch_size": 64, "eval_each_epoch": True}, export={"precisions": ["int8"]}))
    result = run_recipe(recipe, tmp_path)
    assert "evaluate.int8" in {s.name for s in result.stages}
    results = json.loads((tmp_path / "summary.json").read_text())["results"]
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["dense", "one-shot 2:4", "recovered", "INT8 PTQ"] and results["primary"] == "accuracy"
    assert rows["dense"]["metric"] > 80 and rows["recovered"]["steps"] > 0 and rows["recovered"]["minutes"] is not None
    assert rows["INT8 PTQ"]["int8"] and "agreement" in rows["INT8 PTQ"]["fidelity"] and rows["INT8 PTQ"]["minutes"] is not None
    assert len(results["epochs"]) == 2 and results["epochs"][-1] == rows["recovered"]["metric"]
    # the INT8 row is the model the int8 ONNX holds: its accuracy on the test images is the same
    session = ort.InferenceSession(str(tmp_path / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: task.x_test.astype(np.float32)})[0]
    onnx_accuracy = 100.0 * float((logits.argmax(1) == task.y_test).mean())
    assert abs(onnx_accuracy - rows["INT8 PTQ"]["metric"]) <= 100.0 * 2 / len(task.y_test)
    md = (tmp_path / "summary.md").read_text()
    assert "## Results" in md and "| INT8 PTQ |" in md and "accuracy after each fine-tuning epoch" in md
    assert (tmp_path / "summary.png").read_bytes().startswith(PNG)
    again = run_recipe(recipe, tmp_path)
    assert all(s.status == "skipped" for s in again.stages), [(s.name, s.status) for s in again.stages]


def test_qat_run_makes_the_recovered_model_the_int8_row_and_plots_bars(digits_dense, tmp_path):
    _, _, dense_path = digits_dense
    recipe = recipe_from_dict(_recipe(dense_path, finetune={"epochs": 1, "lr": 1e-3, "batch_size": 64, "quantize": "int8", "calib_samples": 64}, export={"precisions": ["int8"]}))
    result = run_recipe(recipe, tmp_path)
    assert "evaluate.int8" not in {s.name for s in result.stages} and not (tmp_path / "int8.eval.json").exists()
    results = json.loads((tmp_path / "summary.json").read_text())["results"]
    assert [r["name"] for r in results["rows"]] == ["dense", "one-shot 2:4", "recovered, INT8 QAT"] and results["epochs"] == []
    assert results["rows"][-1]["int8"] and results["rows"][-1]["steps"] > 0
    assert "eval_each_epoch: true" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.png").read_bytes().startswith(PNG)


def test_a_run_without_a_task_has_no_results_and_no_plot(tmp_path):
    run_recipe(recipe_from_dict({"version": 1, "name": "t", "model": {"source": "mlp"}, "sparsify": {"method": "magnitude"}, "export": {"precisions": ["int8"]}}), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["results"] is None
    assert not (tmp_path / "summary.png").exists() and "## Results" not in (tmp_path / "summary.md").read_text()
