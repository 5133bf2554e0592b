"""A real `sparsekit serve` on loopback, in its own process, per test that needs one; helpers to
watch its workers through the job store and /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``sparsekit serve`` as users start it. ``wrap`` is a command prefix (``prlimit ...``,
    ``unshare ... sh -c ...``) that ends by exec-ing the server, so ``proc.pid`` is the server.
    ``env`` adds to (or overrides) the server's environment, e.g. ``SPARSEKIT_TOKENS``."""

    def __init__(self, state: Path, *extra: str, token: bool = True, wrap: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.state, self.extra, self.token, self.wrap, self.env = state, extra, token, wrap, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    @property
    def log_path(self) -> Path:
        return self.state.parent / f"server-{self.port}.log"

    def start(self) -> "Server":
        env = {**os.environ, "SPARSEKIT_TOKENS": TOKEN if self.token else "", "SPARSEKIT_ADMIN_TOKENS": "", **self.env}
        cmd = [*self.wrap, sys.executable, "-m", "sparsekit", "serve", "--port", str(self.port), "--state-dir", str(self.state), *self.extra]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def view(self, path: Path) -> Path:
        """``path`` as this server sees it (through its mount namespace when it has its own)."""
        return Path(f"/proc/{self.proc.pid}/root") / path.relative_to("/") if self.wrap else path

    def signal(self, sig: int, timeout: float = 60) -> int:
        """Send ``sig`` to the server process alone (as systemd or docker do) and wait for its exit."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def client(self, token: str | None = TOKEN):
        from sparsekit.service.client import BuildClient

        return BuildClient(self.url, token)


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_until(predicate, timeout: float = 60, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds passed (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def worker_of(state: Path, job_id: str, timeout: float = 60) -> int:
    """The pid of the job's build process, as the server recorded it in the job store."""
    from sparsekit.service.jobs import JobStore

    store = JobStore(state / "jobs.db")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = store.get(job_id).worker_pid
        if pid:
            return pid
        time.sleep(0.01)
    raise AssertionError(f"the worker of job {job_id} never started")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "state").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    """A few distinct small ONNX files (distinct content -> distinct cache keys)."""
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model

    root = tmp_path_factory.mktemp("onnx")
    return [export_(load_model("mlp", {"hidden": 64 * (i + 1), "in_features": 32}), "fp32", root / f"mlp{i}.onnx").path for i in range(5)]
