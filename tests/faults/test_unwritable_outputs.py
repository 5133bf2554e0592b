"""Outputs that cannot be written are refused before any work starts, with one line: a read-only
folder (a real read-only mount for root, a mode-0555 folder otherwise) and a path under a file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import one_line_error
from tests.conftest import sparsekit_cli
from tests.onnx_graphs import build_graphs


def _exe() -> list[str]:
    exe = shutil.which("sparsekit", path=str(Path(sys.executable).parent)) or shutil.which("sparsekit")
    return [exe] if exe else [sys.executable, "-m", "sparsekit"]


@pytest.fixture
def read_only(tmp_path):
    """``(folder, run)``: a folder the CLI run by ``run(*args)`` cannot write into."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, sparsekit_cli
        folder.chmod(0o755)
        return
    # root writes through permissions: give the command its own mount namespace with the folder read-only
    wrap = ["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$1" "$1" && shift && exec "$@"', "sh", str(folder)]
    probe = subprocess.run([*wrap, "sh", "-c", f"touch {folder}/x"], capture_output=True, text=True)
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        pytest.skip(f"cannot make a read-only folder for root here (unshare/mount: {probe.stderr.strip()[:120]})")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*wrap, *_exe(), *args], capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})

    yield folder, run


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("graphs")
    build_graphs(root)
    return root / "gemm.onnx"


CASES = {
    "sparsify --report": ["sparsify", "mlp", "-o", "{ok}/m.pt", "--report", "{bad}/r.json"],
    "sparsify -o": ["sparsify", "mlp", "-o", "{bad}/m.pt"],
    "check --report": ["check", "{onnx}", "--require", "*", "--report", "{bad}/r.json"],
    "export -o": ["export", "mlp", "-o", "{bad}/m.onnx"],
    "build --store": ["build", "{onnx}", "--backend", "onnxruntime", "--store", "{bad}/engines"],
    "build --triton": ["build", "{onnx}", "--backend", "onnxruntime", "--store", "{ok}/engines", "--triton", "{bad}/triton"],
    "bench --out": ["bench", "{onnx}", "--backend", "onnxruntime", "--out", "{bad}/bench"],
    "demo --out": ["demo", "--out", "{bad}/demo"],
    "submit --download": ["submit", "{onnx}", "--server", "http://127.0.0.1:9", "--wait", "--download", "{bad}/dl"],
}


def _args(case: str, bad: Path, ok: Path, onnx: Path) -> list[str]:
    return [a.replace("{bad}", str(bad)).replace("{ok}", str(ok)).replace("{onnx}", str(onnx)) for a in CASES[case]]


@pytest.mark.parametrize("case", list(CASES))
def test_read_only_folder_is_refused_before_the_work(read_only, tmp_path, onnx_file, case):
    folder, run = read_only
    ok = tmp_path / "ok"
    line = one_line_error(run(*_args(case, folder, ok, onnx_file)), code=2)
    assert "not writable" in line and str(folder) in line
    assert not ok.exists(), "nothing was written anywhere: the command stopped before its work"


@pytest.mark.parametrize("case", ["sparsify --report", "sparsify -o", "check --report", "build --store", "bench --out"])
def test_path_under_a_file_is_refused_before_the_work(tmp_path, onnx_file, case):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder")
    ok = tmp_path / "ok"
    line = one_line_error(sparsekit_cli(*_args(case, a_file, ok, onnx_file)), code=2)
    assert f"under the file '{a_file}'" in line or f"'{a_file}' is a file" in line
    assert not ok.exists() and a_file.read_text() == "a file, not a folder"
