"""Shared fixtures. Everything here runs on CPU with the real ModelOpt, ONNX and ONNX Runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def data_cache_in_tmp(tmp_path_factory):
    """The data cache of every test in a folder of its own session, never the user's ~/.cache."""
    old = os.environ.get("SPARSEKIT_CACHE_DIR")
    os.environ["SPARSEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("sparsekit-cache"))
    yield
    if old is None:
        os.environ.pop("SPARSEKIT_CACHE_DIR", None)
    else:
        os.environ["SPARSEKIT_CACHE_DIR"] = old


def pytest_configure(config):
    """Under pytest-xdist, each worker gets its share of the cores for torch's intra-op threads
    (workers x threads = cores): two workers each using every core would slow both down."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def sparse_models(tmp_path_factory):
    """Magnitude-sparsified small zoo models: {name: LoadedModel} (built once per session)."""
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    out = {}
    for name in ("mlp", "cnn", "bert"):
        loaded = load_model(name)
        loaded.model, _ = sparsify_(loaded.model, "magnitude")
        out[name] = loaded
    return out


@pytest.fixture(scope="session")
def exported(sparse_models, tmp_path_factory):
    """Every zoo model exported in every precision: {(name, precision): ExportResult}."""
    from sparsekit.export.export import export_

    root = tmp_path_factory.mktemp("exports")
    return {(n, p): export_(m, p, root / f"{n}.{p}.onnx") for n, m in sparse_models.items() for p in ("fp32", "fp16", "int8")}


def sparsekit_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed ``sparsekit`` console script as a user would."""
    exe = shutil.which("sparsekit", path=str(Path(sys.executable).parent)) or shutil.which("sparsekit")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "sparsekit", *args]
    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal, so tables are not cut
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def sparsekit_inprocess(*args: str, stdin: str = "", cwd: str | os.PathLike | None = None, timeout: int | None = None) -> subprocess.CompletedProcess:
    """Run ``sparsekit ARGS`` in this process, as :func:`sparsekit_cli` does in a subprocess, and
    return the same ``returncode``, ``stdout`` and ``stderr``.

    The command's imports are paid once per test session instead of ~10 s per call; what only a
    process shows (the console script, signals, exit on a fatal error) keeps :func:`sparsekit_cli`.
    ``timeout`` is accepted for symmetry and not enforced.
    """
    import contextlib
    import io

    from sparsekit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin, old_cwd = sys.stdin, os.getcwd()
    sys.stdin = io.StringIO(stdin)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = old_stdin
        os.chdir(old_cwd)
    return subprocess.CompletedProcess(["sparsekit", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """The CLI as tests call it: in-process (:func:`sparsekit_inprocess`)."""
    return sparsekit_inprocess


@pytest.fixture
def cli_subprocess():
    """The installed console script in a real subprocess, for what only a process shows."""
    return sparsekit_cli


@pytest.fixture
def cli_inprocess():
    return sparsekit_inprocess


@pytest.fixture(scope="session")
def digits_dense(tmp_path_factory):
    """The digits task and its zoo CNN trained dense for 3 epochs: (task, LoadedModel, checkpoint path)."""
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model
    from sparsekit.recover.finetune import TrainingConfig
    from sparsekit.recover.task_finetune import finetune_on_task_
    from sparsekit.tasks import get_task

    task = get_task("digits")
    loaded = load_model(task.model[0], task.model[1])
    loaded.model, _ = finetune_on_task_(loaded.model, task, TrainingConfig(epochs=3, lr=3e-3, weight_decay=1e-4), batch_size=64)
    path = tmp_path_factory.mktemp("digits") / "dense.pt"
    save_checkpoint(loaded, path)
    return task, loaded, path


@pytest.fixture
def onnx_loads(monkeypatch) -> list[Path]:
    """The resolved path of every ONNX file ``onnx.load`` parses while the test runs (the real
    function is called; this only records)."""
    import onnx

    loads: list[Path] = []
    real_load = onnx.load

    def counting_load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            loads.append(Path(f).resolve())
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", counting_load)
    monkeypatch.setattr(onnx, "load_model", counting_load)
    return loads
