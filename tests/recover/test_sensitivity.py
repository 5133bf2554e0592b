"""Sensitivity analysis: rows ranked by loss, and its exclude list drives sparsify."""

from __future__ import annotations

import json

import pytest

from sparsekit.recover.sensitivity import group_layers, layer_sensitivity, write_sensitivity


def test_grouping():
    names = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.attention.self.query", "head"]
    assert list(group_layers(names, "block")) == ["bert.encoder.layer.0", "bert.encoder.layer.1", "head"]
    assert group_layers(names, "kind")["*.query"] == [names[0], names[2]]
    assert len(group_layers(names, "layer")) == 4


@pytest.fixture(scope="module")
def sensitivity(digits_dense):
    task, loaded, _ = digits_dense
    return layer_sensitivity(loaded.model, task, "magnitude", "layer")


def test_rows_are_ranked_by_loss_and_cover_eligible_layers(sensitivity, digits_dense):
    _, loaded, _ = digits_dense
    rows = sensitivity.rows
    assert [r.delta for r in rows] == sorted(r.delta for r in rows)
    assert {r.group for r in rows} == {"stages.0.conv1.0", "stages.0.conv2.0", "stages.1.conv1.0", "stages.1.conv2.0", "stages.1.shortcut.0", "stages.2.conv1.0", "stages.2.conv2.0", "stages.2.shortcut.0"}
    assert all(r.layers == [r.group] for r in rows)
    assert sensitivity.dense == pytest.approx(digits_dense[0].evaluate(loaded.model).metrics["accuracy"], abs=1e-3)


def test_exclude_list_drives_sparsify(sensitivity, digits_dense, tmp_path, cli):
    _, _, dense_ckpt = digits_dense
    worst, best = sensitivity.rows[0], sensitivity.rows[-1]
    assert worst.delta < best.delta, "layers should differ in sensitivity"
    sensitivity.threshold = -(worst.delta + best.delta) / 2  # between the most and the least sensitive layer
    expected = sensitivity.exclude()
    assert worst.group in expected and best.group not in expected
    paths = write_sensitivity(sensitivity, tmp_path)
    assert json.loads(paths["json"].read_text())["exclude"] == expected
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("sparsify", str(dense_ckpt), "-o", str(tmp_path / "s.pt"), "--exclude-from", str(paths["json"]), "--json")
    assert r.returncode == 0, r.stderr
    layers = {d["name"]: d["status"] for d in json.loads(r.stdout)["layers"]}
    assert all(layers[name] == "excluded" for name in expected)
    assert sum(s == "sparsified" for s in layers.values()) == 8 - len(expected)
