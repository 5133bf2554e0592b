"""`sparsekit check` must agree with `polygraphy inspect sparsity` on every ONNX file of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from polygraphy.tools.sparse import SparsityPruner

from sparsekit.export.int8_weights import float_weights_view
from sparsekit.sparsify.check import check_onnx
from tests.onnx_graphs import build_graphs


def polygraphy_verdicts(path: Path) -> dict[str, bool]:
    """Polygraphy's verdict for every weight it inspects: {initializer: is 2:4}."""
    pruner = SparsityPruner(float_weights_view(onnx.load(str(path))))
    infos = pruner._walk_nodes()  # the weights Polygraphy considers (float types, axis % 4 == 0)
    pruner.prune_infos.clear()
    pruner.check()
    return {info.name: info.name in pruner.sparse_tensors for info in infos}


def assert_agree(path: Path) -> dict[str, bool]:
    ours = {}
    for layer in check_onnx(path).layers:
        ours.setdefault(layer.weight, layer.is_2to4)
    theirs = polygraphy_verdicts(path)
    assert theirs, f"polygraphy inspected no weight of {path}"
    for name, verdict in theirs.items():
        assert name in ours, f"{path.name}: polygraphy checks {name}, sparsekit does not"
        assert ours[name] == verdict, f"{path.name}: {name}: sparsekit {ours[name]} vs polygraphy {verdict}"
    return ours


def test_handcrafted_graphs_agree_and_match_expectations(tmp_path):
    cases = build_graphs(tmp_path)
    for name, expected in cases.items():
        ours = assert_agree(tmp_path / name)
        for init, verdict in expected.items():
            assert ours[init] is verdict, f"{name}:{init}"


def test_exported_variants_agree(exported):
    sparse_seen = 0
    for (model, precision), result in exported.items():
        ours = assert_agree(result.path)
        sparse_seen += sum(ours.values())
    assert sparse_seen > 20


def test_dense_export_agrees(tmp_path):
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model

    result = export_(load_model("mlp"), "fp32", tmp_path / "dense.onnx")
    ours = assert_agree(result.path)
    assert not any(ours.values())


def test_polygraphy_cli_names_the_same_sparse_tensors(exported):
    path = exported[("cnn", "fp16")].path
    proc = subprocess.run([sys.executable, "-m", "polygraphy", "inspect", "sparsity", str(path)], capture_output=True, text=True)
    if proc.returncode != 0 and "No module named polygraphy.__main__" in proc.stderr:
        exe = Path(sys.executable).parent / "polygraphy"
        proc = subprocess.run([str(exe), "inspect", "sparsity", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    cli_sparse = {line.split("Found sparse tensor: ")[1].strip() for line in log.splitlines() if "Found sparse tensor: " in line}
    ours = {layer.weight for layer in check_onnx(path).layers if layer.is_2to4}
    assert cli_sparse == ours and len(ours) == 8


@pytest.mark.parametrize("name", ["conv.onnx", "gemm.onnx", "matmul.onnx"])
def test_require_fails_on_non_sparse(tmp_path, name):
    cases = build_graphs(tmp_path)
    report = check_onnx(tmp_path / name, require=["*"])
    assert report.passed == all(cases[name].values())


def test_user_factory_model_agrees(tmp_path):
    """A user model given as file.py:factory: sparsify, export fp16 and int8, both checkers agree."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_
    from tests.conftest import DATA

    loaded = load_model(f"{DATA / 'user_model.py'}:build", {"width": 64})
    loaded.model, report = sparsify_(loaded.model, "sparsegpt", calib=[loaded.inputs.random(batch=4, seed=i) for i in range(4)])
    for precision in ("fp16", "int8"):
        result = export_(loaded, precision, tmp_path / f"user.{precision}.onnx")
        ours = assert_agree(result.path)
        assert sum(ours.values()) == len(report.sparsified) == 3
