"""Atomic writes: what a failed or killed write leaves, and what the next write removes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sparsekit._io import RUN_STARTED, atomic_path, ensure_writable_file, ensure_writable_folder, remove_stale_temps
from sparsekit.cli.signals import Terminated
from sparsekit.errors import OutputPathError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _old(path, content: bytes = b"partial"):
    path.write_bytes(content)
    os.utime(path, (RUN_STARTED - 60, RUN_STARTED - 60))
    return path


def test_stale_temporaries_of_the_target_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale = [
        _old(tmp_path / f".model.onnx.{dead}.a1b2c3d4.tmp"),  # killed run of this kit
        _old(tmp_path / ".model.onnx.a1b2c3d4.tmp"),  # earlier kit versions' naming (no pid)
        _old(tmp_path / f".model.onnx.{dead}.a1b2c3d4.tmp.fp32.tmp"),  # a helper's temporary derived from it
    ]
    kept = [
        _old(tmp_path / f".model.onnx.{os.getppid()}.a1b2c3d4.tmp"),  # a live process is writing it
        (tmp_path / f".model.onnx.{dead}.e5f6g7h8.tmp"),  # written after this process started
        _old(tmp_path / f".other.onnx.{dead}.a1b2c3d4.tmp"),  # another target's
        _old(tmp_path / ".model.onnx.tmp"),  # not the kit's naming
        _old(tmp_path / "model.onnx.a1b2c3d4.tmp"),
        _old(tmp_path / "model.onnx"),
    ]
    kept[1].write_bytes(b"in progress")
    (tmp_path / f".model.onnx.{dead}.zzzzzzzz.tmp").mkdir()  # a folder, whatever its name
    removed = remove_stale_temps(tmp_path / "model.onnx")
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert (tmp_path / f".model.onnx.{dead}.zzzzzzzz.tmp").is_dir()


def test_atomic_write_removes_stale_temporaries_first(tmp_path):
    stale = _old(tmp_path / f".out.json.{_dead_pid()}.a1b2c3d4.tmp")
    with atomic_path(tmp_path / "out.json") as tmp:
        assert tmp.name.startswith(f".out.json.{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert not stale.exists()
        tmp.write_text("{}")
    assert (tmp_path / "out.json").read_text() == "{}"


@pytest.mark.parametrize("stop", [RuntimeError("boom"), KeyboardInterrupt(), Terminated(15)], ids=["error", "ctrl-c", "sigterm"])
def test_an_interrupted_write_leaves_nothing(tmp_path, stop):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(type(stop)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise stop
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_writability_checks_create_nothing(tmp_path):
    ensure_writable_folder(tmp_path / "a" / "b" / "c")
    ensure_writable_file(tmp_path / "x" / "report.json")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("file")
    with pytest.raises(OutputPathError, match="is a file"):
        ensure_writable_folder(tmp_path / "f")
    with pytest.raises(OutputPathError, match="under the file"):
        ensure_writable_file(tmp_path / "f" / "deeper" / "report.json")
    with pytest.raises(OutputPathError, match="is a folder"):
        ensure_writable_file(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_process_start_is_before_now():
    assert RUN_STARTED <= time.time()
