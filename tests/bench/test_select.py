"""Layer lists drive sparsify: from a selection JSON, a sensitivity-style exclude JSON, or text."""

import json

import pytest

from sparsekit.sparsify.layer_lists import read_layer_list
from sparsekit.errors import SparsekitError


def test_read_layer_list(tmp_path):
    (tmp_path / "sel.json").write_text(json.dumps({"include": ["a", "b"], "exclude": ["c"]}))
    assert read_layer_list(tmp_path / "sel.json") == ["a", "b"]
    assert read_layer_list(tmp_path / "sel.json", "exclude") == ["c"]
    (tmp_path / "list.txt").write_text("# layers\nlayers.0.*\n\nhead  # classifier\n")
    assert read_layer_list(tmp_path / "list.txt") == ["layers.0.*", "head"]
    with pytest.raises(SparsekitError, match="does not exist"):
        read_layer_list(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SparsekitError, match="not valid JSON"):
        read_layer_list(tmp_path / "bad.json")


def test_sparsify_takes_include_and_exclude_files(cli, tmp_path):
    (tmp_path / "sel.json").write_text(json.dumps({"include": ["layers.0.*"], "exclude": []}))
    (tmp_path / "sens.json").write_text(json.dumps({"exclude": ["layers.0.ffn_out"]}))
    proc = cli("sparsify", "bert", "--include-from", str(tmp_path / "sel.json"), "--exclude-from", str(tmp_path / "sens.json"), "-o", str(tmp_path / "b.pt"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["sparsified"]) == ["layers.0.attn_out", "layers.0.ffn_in", "layers.0.key", "layers.0.query", "layers.0.value"]
    (tmp_path / "empty.json").write_text(json.dumps({"include": []}))
    proc = cli("sparsify", "bert", "--include-from", str(tmp_path / "empty.json"), "-o", str(tmp_path / "c.pt"))
    assert proc.returncode == 2 and "includes no layer" in proc.stderr and not (tmp_path / "c.pt").exists()


def test_select_needs_a_gpu(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    proc = cli("select", "bert", "-o", str(tmp_path / "s.json"))
    assert proc.returncode == 2 and "CUDA GPU" in proc.stderr and not (tmp_path / "s.json").exists()
