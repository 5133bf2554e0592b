"""ONNX files with external data: the layout exports write is built and its artifact loads on its
own; every location outside the ONNX's folder (absolute, ``..``, links out, devices, FIFOs) is
refused before anything reads or hashes it; the build service's check refuses external data."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sparsekit.backends.build import build_engine
from sparsekit.backends.onnx_external import external_data_files, refuse_external_data
from sparsekit.backends.registry import get_backend
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.store import onnx_digest
from sparsekit.errors import ExternalDataError
from sparsekit.export.parity import ort_session
from tests.backends.onnx_files import save_with_external_data, set_location

ORT = BuildSpec(backend="onnxruntime")


@pytest.fixture
def external(exported, tmp_path):
    """The zoo CNN (fp16) saved with its weights in ``model.onnx.data`` next to it."""
    return save_with_external_data(exported[("cnn", "fp16")].path, tmp_path / "src")


def _load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def test_the_export_layout_is_accepted_and_hashed_with_its_data(external, exported):
    assert external_data_files(_load(external), external) == [external.parent / "model.onnx.data"]
    inline = exported[("cnn", "fp16")].path
    assert external_data_files(_load(inline), inline) == []
    digest = onnx_digest(external)
    data = external.parent / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF  # same ONNX protobuf, different weights: a different engine key
    data.write_bytes(bytes(raw))
    assert onnx_digest(external) != digest


def test_onnxruntime_artifact_of_external_data_loads_on_its_own(external, tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = ort_session(external).run(None, {"input": x})[0]
    record = build_engine(external, ORT, tmp_path / "store")
    assert [f.name for f in record.data_files] == ["model.ort.onnx.data"]
    assert set(record.metadata["artifact_files"]) == {"model.ort.onnx.data"}
    shutil.rmtree(external.parent)  # the store entry must not need the source folder
    runner = get_backend("onnxruntime").load(record.artifact)
    assert np.allclose(runner.run({"input": x})[0], want, atol=1e-3)


def test_triton_copies_the_data_file(external, tmp_path):
    from sparsekit.backends.triton import export_triton

    record = build_engine(external, ORT, tmp_path / "store")
    folder = export_triton([record], tmp_path / "repo", "cnn")
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "model.ort.onnx.data"]
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert get_backend("onnxruntime").load(folder / "1" / "model.onnx").run({"input": x})[0].shape == (1, 10)


def _hostile(external: Path, tmp_path: Path, case: str) -> Path:
    data = external.parent / "model.onnx.data"
    if case == "dotdot":
        shutil.copyfile(data, tmp_path / "outside.data")
        return set_location(external, "../outside.data")
    if case == "dotdot-nested":
        (external.parent / "sub").mkdir()
        shutil.copyfile(data, tmp_path / "outside.data")
        return set_location(external, "sub/../../outside.data")
    if case == "absolute-file":
        return set_location(external, str(data))  # the right bytes, but an absolute path
    if case == "dev-zero":
        return set_location(external, "/dev/zero")
    if case == "link-to-device":
        os.symlink("/dev/zero", external.parent / "weights.data")
        return set_location(external, "weights.data")
    if case == "link-out":
        shutil.copyfile(data, tmp_path / "outside.data")
        os.symlink(tmp_path / "outside.data", external.parent / "weights.data")
        return set_location(external, "weights.data")
    if case == "fifo":
        os.mkfifo(external.parent / "weights.data")
        return set_location(external, "weights.data")
    if case == "missing":
        return set_location(external, "nowhere.data")
    if case == "truncated":
        data.write_bytes(data.read_bytes()[:100])
        return external
    raise AssertionError(case)


CASES = {
    "dotdot": "leaves the ONNX's folder", "dotdot-nested": "leaves the ONNX's folder", "absolute-file": "absolute path", "dev-zero": "absolute path",
    "link-to-device": "leads out", "link-out": "leads out", "fifo": "not a regular file", "missing": "does not exist", "truncated": "needs bytes",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unsafe_locations_are_refused_before_anything_reads_them(external, tmp_path, case):
    onnx_path = _hostile(external, tmp_path, case)
    with pytest.raises(ExternalDataError, match=CASES[case]):
        build_engine(onnx_path, ORT, tmp_path / "store")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
    with pytest.raises(ExternalDataError):
        onnx_digest(onnx_path)


def test_cli_refuses_dev_zero_in_one_line(cli, external, tmp_path):
    onnx_path = _hostile(external, tmp_path, "dev-zero")
    # A build that read /dev/zero would never end; the time-out only guards the suite.
    proc = cli("build", str(onnx_path), "--backend", "onnxruntime", "--store", str(tmp_path / "store"), timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'/dev/zero'" in lines[0] and "absolute path" in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in proc.stderr


def test_service_check_refuses_any_external_data(external, exported):
    refuse_external_data(exported[("cnn", "fp16")].path)  # self-contained: accepted
    with pytest.raises(ExternalDataError, match="external data") as info:
        refuse_external_data(external)
    assert "model.onnx.data" in info.value.problem and "upload" in info.value.problem
    set_location(external, "/etc/passwd")
    with pytest.raises(ExternalDataError, match="/etc/passwd"):
        refuse_external_data(external)  # refused without resolving or opening the location


def test_metadata_records_the_data_file_hash(external, tmp_path):
    record = build_engine(external, ORT, tmp_path / "store")
    meta = json.loads((record.folder / "metadata.json").read_text())
    from sparsekit._hashing import file_sha256

    assert meta["artifact_files"]["model.ort.onnx.data"] == file_sha256(record.folder / "model.ort.onnx.data")
