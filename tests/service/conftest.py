"""A real `sparsekit serve` on loopback, in its own process, per test that needs one."""

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
    def __init__(self, state: Path, *extra: str, token: bool = True) -> None:
        self.state, self.extra, self.token = state, extra, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "Server":
        env = {**os.environ, "SPARSEKIT_TOKENS": TOKEN if self.token else ""}
        cmd = [sys.executable, "-m", "sparsekit", "serve", "--port", str(self.port), "--state-dir", str(self.state), *self.extra]
        self.log = open(self.state.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.state.parent / f'server-{self.port}.log').read_text()}")
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
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
