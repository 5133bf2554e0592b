"""Hostile ONNX files: `analyze` and `check` validate every tensor's stored bytes against its declared
size and run ONNX's checker before reading anything, and answer in one line (exit 2), fast."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsekit.analyze.onnx_layers import analyze_onnx
from sparsekit.onnx_io.validate import MAX_TENSOR_RANK, load_validated_onnx
from sparsekit.cli.main import main
from sparsekit.errors import ExternalDataError, OnnxModelError
from sparsekit.sparsify.check import check_onnx
from tests.onnx_graphs import lying_initializer, save_matmul, sparse_values


def cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    """Run the CLI in-process: (exit status, stdout, non-empty stderr lines)."""
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def one_line_error(capsys, args, code: int = 2, match: str = "") -> str:
    """Assert the CLI fails with ``code`` and exactly one ``sparsekit: error:`` line containing ``match``."""
    rc, _, err = cli(capsys, *args)
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("sparsekit: error:"), err
    assert "Traceback" not in err[0] and "internal error" not in err[0]
    assert match in err[0], err[0]
    return err[0]


def _external(tmp_path, location: str, data: bytes, length: int | None, dims=(16, 8)) -> onnx.TensorProto:
    """A float32 tensor ``w`` whose bytes live in the external file ``location``."""
    (tmp_path / "data.bin").write_bytes(data)
    t = TensorProto()
    t.name, t.data_type, t.data_location = "w", TensorProto.FLOAT, TensorProto.EXTERNAL
    t.dims.extend(dims)
    for key, value in (("location", location), ("offset", "0"), *((("length", str(length)),) if length is not None else ())):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _typed(dims, field: str, count: int, data_type=TensorProto.FLOAT) -> onnx.TensorProto:
    t = TensorProto()
    t.name, t.data_type = "w", data_type
    t.dims.extend(dims)
    getattr(t, field).extend([0] * count)
    return t


def test_a_tensor_declaring_2_gib_with_16_bytes_is_refused_by_analyze_and_check(tmp_path, capsys):
    path = save_matmul(tmp_path / "lying.onnx", {"w": lying_initializer()}, k=32768, n=16384, check=False)
    for call in (analyze_onnx, lambda p: check_onnx(p, ["*"])):
        with pytest.raises(OnnxModelError, match=r"tensor 'w' declares dims \[32768, 16384\] of FLOAT \(2147483648 bytes of raw_data expected\) but stores 16"):
            call(path)
    for command in ("analyze", "check"):
        one_line_error(capsys, [command, str(path)], match="tensor 'w' declares dims [32768, 16384]")


@pytest.mark.parametrize("tensor, match", [
    (lying_initializer(dims=(16, 8), nbytes=513), "(512 bytes of raw_data expected) but stores 513"),
    (_typed((16, 8), "float_data", 5), "(128 values in float_data expected) but stores 5"),
    (_typed((16, 8), "float_data", 129), "(128 values in float_data expected) but stores 129"),
    (_typed((16, 8), "int32_data", 127, TensorProto.FLOAT16), "(128 values in int32_data expected) but stores 127"),
    (_typed((16, 8), "int32_data", 128, TensorProto.INT4), "(64 values in int32_data expected) but stores 128"),
    (lying_initializer(dims=(-4, 4), nbytes=16), "negative dim [-4, 4]"),
    (lying_initializer(dims=(2**31, 2**31), nbytes=16), "over the 64 GiB a tensor may have"),
    (lying_initializer(dims=(16, 8, *[1] * 100_000), nbytes=512), f"declares 100002 dims (at most {MAX_TENSOR_RANK}"),
])
def test_stored_size_must_equal_declared_size(tmp_path, capsys, tensor, match):
    path = save_matmul(tmp_path / "bad.onnx", {"w": tensor}, check=False)
    with pytest.raises(OnnxModelError, match="tensor 'w' declares") as info:
        analyze_onnx(path)
    assert match in str(info.value)
    one_line_error(capsys, ["check", str(path), "--require", "*"], match=match)


def test_external_data_must_hold_the_declared_bytes(tmp_path, capsys):
    w = sparse_values((16, 8))
    short = save_matmul(tmp_path / "short.onnx", {"w": _external(tmp_path, "data.bin", w.tobytes()[:100], None)}, check=False)
    with pytest.raises(ExternalDataError, match=r"\(512 bytes of external data expected\) but stores 100"):
        analyze_onnx(short)
    one_line_error(capsys, ["check", str(short), "--require", "*"], match="but stores 100")
    past_end = save_matmul(tmp_path / "past.onnx", {"w": _external(tmp_path, "data.bin", w.tobytes()[:100], 512)}, check=False)
    with pytest.raises(ExternalDataError, match="run past its end"):
        check_onnx(past_end, ["*"])
    exact = save_matmul(tmp_path / "exact.onnx", {"w": _external(tmp_path, "data.bin", w.tobytes(), 512)}, check=False)
    assert check_onnx(exact, ["*"]).passed and analyze_onnx(exact).layers[0].shape == [16, 8]


def test_external_data_outside_the_folder_keeps_its_error(tmp_path, capsys):
    inner = tmp_path / "inner"
    inner.mkdir()
    w = sparse_values((16, 8))
    path = save_matmul(inner / "m.onnx", {"w": _external(tmp_path, "../data.bin", w.tobytes(), 512)}, check=False)
    for call in (analyze_onnx, lambda p: check_onnx(p, ["*"])):
        with pytest.raises(ExternalDataError, match="outside"):
            call(path)
    one_line_error(capsys, ["analyze", str(path)], match="points outside the directory")


def test_models_the_onnx_checker_rejects_are_refused(tmp_path, capsys):
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])]
    y = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])]
    one_input = helper.make_graph([helper.make_node("MatMul", ["x"], ["y"], name="/fc/MatMul")], "g", x, y)
    cycle = helper.make_graph([
        helper.make_node("Identity", ["b"], ["a"], name="i1"),
        helper.make_node("Identity", ["a"], ["b"], name="i2"),
        helper.make_node("MatMul", ["x", "a"], ["y"], name="/fc/MatMul"),
    ], "g", x, y, [numpy_helper.from_array(np.ones((16, 16), np.float32), "unused")])
    for name, graph, match in (("one_input", one_input, "has input size 1"), ("cycle", cycle, "topologically sorted")):
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        with pytest.raises(OnnxModelError, match="fails the ONNX checker"):
            load_validated_onnx(path)
        for command in ("analyze", "check"):
            line = one_line_error(capsys, [command, str(path), *(["--require", "*"] if command == "check" else [])], match=match)
            assert "fails the ONNX checker" in line


@pytest.mark.parametrize("content, match", [
    (b"", "is empty"),
    (b"\x08\x08\x3a\x80\x80\x80\x80\x80\x20" + b"\x00" * 64, "not a readable ONNX model"),  # graph field claiming 2**40 bytes
    (None, "not a readable ONNX model"),  # random bytes
])
def test_empty_random_and_huge_length_files_are_one_line(tmp_path, capsys, content, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096) if content is None else content)
    for command in ("analyze", "check"):
        one_line_error(capsys, [command, str(path)], match=match)


def test_truncated_file_is_one_line(tmp_path, capsys):
    good = save_matmul(tmp_path / "good.onnx", {"w": sparse_values((16, 8))})
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    one_line_error(capsys, ["check", str(cut)], match="not a readable ONNX model")


def test_a_100k_node_graph_is_checked_in_seconds(tmp_path, capsys):
    n = 100_000
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"r{i - 1}"], [f"r{i}"], name=f"relu{i}") for i in range(n)]
    nodes.append(helper.make_node("MatMul", [f"r{n - 1}", "w"], ["y"], name="/fc/MatMul"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
                              [numpy_helper.from_array(sparse_values((16, 8)), "w")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    start = time.perf_counter()
    rc, out, err = cli(capsys, "check", str(path), "--require", "*", "--json")
    elapsed = time.perf_counter() - start
    assert rc == 0, err
    assert json.loads(out)["summary"]["sparse_2to4"] == 1
    assert elapsed < 30, f"{elapsed:.1f} s for {n} nodes"


@pytest.mark.parametrize("onnx_opener", [True, False], ids=["onnx-opener", "own-check"])
def test_external_locations_outside_or_linked_are_refused_with_either_opener(tmp_path, monkeypatch, onnx_opener):
    from onnx import external_data_helper

    if not onnx_opener:  # older onnx releases have no safe opener: the kit's own check applies
        monkeypatch.delattr(external_data_helper, "_open_external_data_fd", raising=False)
    w = sparse_values((16, 8))
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "link.bin").symlink_to(tmp_path / "data.bin")
    for name, location in (("up", "../data.bin"), ("link", "link.bin"), ("absolute", str(tmp_path / "data.bin"))):
        path = save_matmul(inner / f"{name}.onnx", {"w": _external(tmp_path, location, w.tobytes(), 512)}, check=False)
        with pytest.raises(ExternalDataError, match=f"cannot read tensor 'w' from external data '{location}'"):
            load_validated_onnx(path)
    (inner / "data.bin").write_bytes(w.tobytes())
    ok = save_matmul(inner / "ok.onnx", {"w": _external(inner, "data.bin", w.tobytes(), 512)}, check=False)
    assert load_validated_onnx(ok).graph.initializer[0].name == "w"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def test_a_huge_repeated_field_count_is_refused_quickly(tmp_path, capsys):
    base = onnx.load(str(save_matmul(tmp_path / "base.onnx", {"w": sparse_values((16, 8))})))
    graph = base.graph.SerializeToString() + b"\x2a\x00" * 500_000  # 500k empty 'initializer' entries
    base.ClearField("graph")
    path = tmp_path / "repeated.onnx"
    path.write_bytes(base.SerializeToString() + b"\x3a" + _varint(len(graph)) + graph)
    start = time.perf_counter()
    one_line_error(capsys, ["check", str(path), "--require", "*"], match="undefined data type")
    assert time.perf_counter() - start < 20
