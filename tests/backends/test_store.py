"""Engine-store integrity: a cache hit re-checks the artifact's sha256, a damaged entry is rebuilt
with a warning, and ``force`` swaps the new entry in atomically (real builds, onnxruntime backend)."""

import json
import logging
import os

import pytest

from sparsekit.backends.build import build_engine
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.store import EngineStore, _exchange
from sparsekit._hashing import file_sha256

ORT = BuildSpec(backend="onnxruntime")


@pytest.fixture
def built(exported, tmp_path):
    store = EngineStore(tmp_path / "store")
    onnx_path = exported[("mlp", "fp16")].path
    return onnx_path, store, build_engine(onnx_path, ORT, store)


def _flip_last_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_intact_entry_is_a_cache_hit(built):
    onnx_path, store, first = built
    again = build_engine(onnx_path, ORT, store)
    assert again.cached and again.key == first.key and store.entry_problem(first.folder) is None


@pytest.mark.parametrize("damage", ["flip-a-byte", "truncate", "delete-artifact", "garble-metadata"])
def test_damaged_entry_is_rebuilt_with_a_warning(built, caplog, damage):
    onnx_path, store, first = built
    if damage == "flip-a-byte":
        _flip_last_byte(first.artifact)
    elif damage == "truncate":
        first.artifact.write_bytes(first.artifact.read_bytes()[:10])
    elif damage == "delete-artifact":
        first.artifact.unlink()
    else:
        (first.folder / "metadata.json").write_text("{not json")
    assert store.entry_problem(first.folder) is not None
    with caplog.at_level(logging.WARNING, logger="sparsekit.backends.store"):
        record = build_engine(onnx_path, ORT, store)
    assert not record.cached and record.key == first.key
    assert any(first.key[:12] in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert store.entry_problem(record.folder) is None
    assert file_sha256(record.artifact) == record.metadata["artifact_sha256"]
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []


def test_force_replaces_the_entry_atomically(built):
    onnx_path, store, first = built
    old_inode = os.stat(first.folder / "metadata.json").st_ino
    old_created = first.metadata["created"]
    record = build_engine(onnx_path, ORT, store, force=True)
    assert not record.cached and record.folder == first.folder
    assert os.stat(record.folder / "metadata.json").st_ino != old_inode  # a new entry, not files patched in place
    assert store.entry_problem(record.folder) is None and record.metadata["created"] >= old_created
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []


def test_force_over_a_corrupted_entry_leaves_a_good_one(built):
    onnx_path, store, first = built
    _flip_last_byte(first.artifact)
    record = build_engine(onnx_path, ORT, store, force=True)
    assert store.entry_problem(record.folder) is None
    assert build_engine(onnx_path, ORT, store).cached


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which").write_text("new")
    (b / "which").write_text("old")
    _exchange(a, b)
    assert (b / "which").read_text() == "new" and (a / "which").read_text() == "old"


def test_entry_problem_names_the_file(built):
    _, store, first = built
    meta = json.loads((first.folder / "metadata.json").read_text())
    meta["artifact_files"] = {"weights.data": "0" * 64}
    (first.folder / "metadata.json").write_text(json.dumps(meta))
    assert "weights.data" in store.entry_problem(first.folder)
