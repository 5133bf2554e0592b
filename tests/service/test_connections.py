"""The server's connection limits against a real `sparsekit serve` on loopback: a flood of
connections that never finish their request head neither exhausts the server's file descriptors
nor starves /healthz for other clients, and a slow request head is cut after --header-timeout.

Flooding connections come from 127.0.0.2 (still loopback) so that the health checks from
127.0.0.1 are another client."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from sparsekit.errors import ServiceConfigError
from sparsekit.service.connections import ConnectionGuard
from sparsekit.service.settings import ServiceSettings
from tests.service.conftest import Server

PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends the head never comes
FLOOD_FROM = "127.0.0.2"


def open_partial(port: int, source: str = FLOOD_FROM, timeout: float = 2.0) -> socket.socket | None:
    """A connection from ``source`` that sent an unfinished request head (None if refused)."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(PARTIAL_HEAD)
    except OSError:
        s.close()
        return None
    return s


def read_until_closed(s: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes ``s`` (within ``timeout`` s), and when it closed."""
    start = time.monotonic()
    data = b""
    s.settimeout(0.2)
    while time.monotonic() - start < timeout:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"the server kept the connection open for {timeout} s (got {data[:60]!r})")
    return data, time.monotonic() - start


def healthz_within(url: str, seconds: float) -> int:
    """The status of /healthz, asked with a ``seconds`` deadline (a transport error fails the test)."""
    return httpx.get(url + "/healthz", timeout=seconds).status_code


def test_slow_header_flood_from_one_address_does_not_starve_healthz(tmp_path):
    """Defaults only, 256 file descriptors: 300 unfinished heads from one address."""
    server = Server(tmp_path / "state", wrap=("prlimit", "--nofile=256:256")).start()
    flood: list[socket.socket] = []
    try:
        for _ in range(300):
            s = open_partial(server.port)
            if s is not None:
                flood.append(s)
        time.sleep(0.5)  # let the server accept (and refuse) them all
        for _ in range(3):
            assert healthz_within(server.url, 2.0) == 200
        refused = 0
        for s in flood[-50:]:  # the last ones are past the address's cap: answered 429 and closed at once
            data, _ = read_until_closed(s, 5.0)
            refused += data.startswith(b"HTTP/1.1 429")
        assert refused == 50
        assert httpx.get(server.url + "/readyz", timeout=2.0).status_code == 200
    finally:
        for s in flood:
            s.close()
        server.stop()


def test_unfinished_heads_are_cut_after_the_header_timeout_and_the_cap_frees_up(tmp_path):
    server = Server(tmp_path / "state", "--header-timeout", "1", "--max-connections-per-ip", "4").start()
    held: list[socket.socket] = []
    try:
        start = time.monotonic()
        held = [s for s in (open_partial(server.port) for _ in range(4)) if s is not None]
        assert len(held) == 4
        extra = open_partial(server.port)
        assert extra is not None
        held.append(extra)
        data, after = read_until_closed(extra, 3.0)  # the fifth from the address: refused at once
        assert data.startswith(b"HTTP/1.1 429") and after < 0.9
        data, _ = read_until_closed(held[0], 5.0)  # the first: cut by the header timeout
        elapsed = time.monotonic() - start
        assert data.startswith(b"HTTP/1.1 408") and 0.9 <= elapsed < 4.0, (data[:40], elapsed)
        for s in held[1:4]:
            read_until_closed(s, 3.0)
        again = open_partial(server.port)  # their slots are free again
        assert again is not None
        held.append(again)
        time.sleep(0.3)
        again.sendall(b"Connection: close\r\n\r\n")  # a head finished in time is served
        data, _ = read_until_closed(again, 8.0)
        assert data.startswith(b"HTTP/1.1 200"), data[:60]
    finally:
        for s in held:
            s.close()
        server.stop()


def test_the_next_request_on_a_kept_alive_connection_has_the_same_header_timeout(tmp_path):
    server = Server(tmp_path / "state", "--header-timeout", "1").start()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:  # the whole answer, head and body
            chunk = s.recv(4096)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(PARTIAL_HEAD)  # a second request that never finishes its head
        data, after = read_until_closed(s, 4.0)
        assert data.startswith(b"HTTP/1.1 408") and after >= 0.9, (data[:40], after)
    finally:
        s.close()
        server.stop()


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [("--header-timeout", "0", "from 0.1 to 3600"), ("--header-timeout", "1e9", "from 0.1 to 3600"), ("--max-connections-per-ip", "0", "from 1 to 65536")],
)
def test_serve_refuses_bad_connection_limits_in_one_line(cli, tmp_path, flag, value, allowed):
    proc = cli("serve", "--port", "0", "--state-dir", str(tmp_path / "s"), flag, value)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert flag in line and allowed in line, line
    assert not (tmp_path / "s").exists()


def test_settings_refuse_bad_connection_limits():
    for options in ({"header_timeout_s": -1}, {"max_connections_per_ip": 0}, {"max_connections_per_ip": 10**6}):
        with pytest.raises(ServiceConfigError):
            ServiceSettings.from_options(**options)


def test_guard_counts_per_address_and_frees_on_close():
    guard = ConnectionGuard(header_timeout_s=1.0, max_per_ip=2)
    assert guard.admit("10.0.0.1") and guard.admit("10.0.0.1")
    assert not guard.admit("10.0.0.1")  # third from the same address
    assert guard.admit("10.0.0.2")  # another address is not affected
    guard.release("10.0.0.1")
    assert guard.admit("10.0.0.1")
    assert guard.refused == 1 and guard.open == {"10.0.0.1": 2, "10.0.0.2": 1}
