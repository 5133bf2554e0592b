"""SIGTERM and SIGHUP stop a command like Ctrl-C: no temporary file left, the target untouched,
one line and a non-zero exit. What ``kill -9`` leaves is removed by the next run writing the same
target. Real processes of the installed CLI, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import sparsekit_cli

EXPORT = ["export", "bert", "--precision", "fp16", "-o"]


def _exe() -> list[str]:
    import shutil

    exe = shutil.which("sparsekit", path=str(Path(sys.executable).parent)) or shutil.which("sparsekit")
    return [exe] if exe else [sys.executable, "-m", "sparsekit"]


def _temps(folder: Path, target: str) -> list[Path]:
    return sorted(folder.glob(f".{target}.*"))


def _export_until_writing(folder: Path, target: str = "model.onnx", **popen) -> subprocess.Popen:
    """Start ``sparsekit export`` and return once its temporary file exists (it is mid-write)."""
    proc = subprocess.Popen([*_exe(), *EXPORT, str(folder / target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    end = time.monotonic() + 300
    while not _temps(folder, target):
        if proc.poll() is not None:
            raise AssertionError(f"export ended before writing: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("export never started writing")
        time.sleep(0.005)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_stop_signal_cleans_up_like_ctrl_c(tmp_path, sig):
    # the command keeps a signal its parent ignored (nohup ignores SIGHUP): start it with the default
    proc = _export_until_writing(tmp_path, preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("sparsekit: "), stderr
    assert (signal.Signals(sig).name in lines[0]) if sig != signal.SIGINT else ("interrupted" in lines[0])
    assert _temps(tmp_path, "model.onnx") == [], "no temporary file is left behind"
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.report.json").exists()


def test_kill_9_leftovers_are_removed_by_the_next_run(tmp_path):
    proc = _export_until_writing(tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    left = _temps(tmp_path, "model.onnx")
    assert left, "a killed run leaves its temporary file (the case being tested)"
    mine = tmp_path / f".model.onnx.{os.getpid()}.abcdefgh.tmp"  # a live process's temporary: not stale
    other = tmp_path / ".other.onnx.abcdefgh.tmp"  # another target's: not ours to remove
    for keep in (mine, other):
        keep.write_bytes(b"keep")
        os.utime(keep, (time.time() - 3600, time.time() - 3600))
    done = sparsekit_cli(*EXPORT, str(tmp_path / "model.onnx"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.onnx").is_file()
    assert not any(p.exists() for p in left)
    assert mine.exists() and other.exists()


def test_sighup_under_nohup_is_still_ignored(tmp_path):
    """``nohup`` starts a command with SIGHUP ignored so that it outlives its terminal: the CLI keeps that."""
    proc = _export_until_writing(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert (tmp_path / "model.onnx").is_file() and _temps(tmp_path, "model.onnx") == []
