"""Single cases the fuzz suite found, kept as ordinary (fast, unmarked) tests."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import one_line_error


def test_a_recipe_nested_too_deeply_for_the_yaml_parser_is_one_line(tmp_path, cli_inprocess):
    """Was: 'internal error: RecursionError' (PyYAML parses nested collections recursively)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nmodel: {source: mlp}\nk: " + "[" * 2000 + "]" * 2000 + "\n")
    one_line_error(cli_inprocess("run", str(recipe), "--out", str(tmp_path / "run")), 2, "nests lists or mappings too deeply")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    """A real fp32 export of a small zoo MLP (it records its inputs in 'sparsekit.inputs')."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model

    path = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    export_(load_model("mlp", {"in_features": 32, "hidden": 32, "depth": 1, "classes": 4}), "fp32", path)
    return path


@pytest.mark.parametrize("value", ["11", '"abc"', "[1]", "{", '[{"name": "input", "shape": [1, 100000000000000000000000]}]', "[" * 100000])
def test_analyze_refuses_damaged_recorded_inputs_in_one_line(tmp_path, mlp_onnx, cli_inprocess, value):
    """Was: 'internal error: TypeError' (or ValueError, RecursionError) from the metadata the export recorded."""
    import onnx

    model = onnx.load(str(mlp_onnx))
    next(p for p in model.metadata_props if p.key == "sparsekit.inputs").value = value
    path = tmp_path / "damaged.onnx"
    onnx.save(model, str(path))
    one_line_error(cli_inprocess("analyze", str(path)), 2, "damaged 'sparsekit.inputs' metadata entry")


def test_analyze_still_reads_the_recorded_inputs(mlp_onnx, cli_inprocess):
    proc = cli_inprocess("analyze", str(mlp_onnx), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"body.0"' in proc.stdout


@pytest.mark.parametrize("value", [7, 2**63 - 1, 1.5, True])
def test_an_architectures_entry_that_is_not_a_list_is_one_line(tmp_path, cli_inprocess, value):
    """Was: 'internal error: TypeError: 'int' object is not iterable' for ``"architectures": 7``."""
    import json

    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "m"
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["architectures"] = value
    (folder / "config.json").write_text(json.dumps(raw))
    one_line_error(cli_inprocess("analyze", f"hf:{folder}"), 2, "is not a model class of transformers")


@pytest.mark.parametrize("spec", ["x\nos:system", "mlp\nsparsekit: error: all good", "\x1b[2Jos:system"])
def test_a_recorded_code_source_is_shown_on_one_line(tmp_path, cli_inprocess, spec):
    """Was: the refusal echoed the file's spec verbatim, so a newline in it split the error (and could
    forge a second 'sparsekit: error:' line, or a terminal escape)."""
    import torch

    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model

    path = tmp_path / "ck.pt"
    save_checkpoint(load_model("mlp", {"in_features": 32, "hidden": 32, "depth": 1, "classes": 4}), path)
    payload = torch.load(path, weights_only=True)
    payload["source"] = {**payload["source"], "kind": "factory", "spec": spec, "args": {}}
    torch.save(payload, path)
    line = one_line_error(cli_inprocess("check", str(path)), 2, "never run unless you name it")
    assert "\x1b" not in line and "\r" not in line
    assert spec.encode("unicode_escape").decode("ascii") in line
