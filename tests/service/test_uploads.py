"""Uploads that stall or crowd the service, over real sockets: each is timed out (408) or refused
(503), and none keeps a temp file."""

from __future__ import annotations

import select
import socket

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from tests.service.conftest import TOKEN, Server, wait_until

ORT = BuildSpec(backend="onnxruntime")


def stalled_upload(server: Server, declared: int = 1 << 20, sent: bytes = b"\x08\x07" * 50) -> socket.socket:
    """Send the headers and the first bytes of an upload, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = (
        f"POST /v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nX-Build-Spec: {ORT.canonical_json()}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """The server's whole answer on ``sock`` (it closes the connection after refusing an upload)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def temp_uploads(server: Server) -> list[str]:
    return [p.name for p in (server.state / "uploads").glob(".upload-*")]


def test_concurrent_uploads_are_capped_and_a_dropped_one_frees_its_place(tmp_path, small_onnx):
    server = Server(tmp_path / "state", "--max-concurrent-uploads", "2", "--upload-idle-timeout", "600", "--workers", "0").start()
    socks = []
    try:
        socks = [stalled_upload(server) for _ in range(2)]
        assert wait_until(lambda: len(temp_uploads(server)) == 2), "the two uploads never started"
        with pytest.raises(ServiceError, match="503"):
            server.client().submit(small_onnx[0], ORT)
        socks.pop().close()  # the client goes away: its upload ends and its temp file goes
        assert wait_until(lambda: len(temp_uploads(server)) == 1)
        answer = server.client().submit(small_onnx[0], ORT)
        assert answer["how"] == "created"
        metrics = httpx.get(server.url + "/metrics").text
        assert 'sparsekit_rejected_uploads_total{reason="busy"} 1' in metrics
        assert 'sparsekit_rejected_uploads_total{reason="disconnected"} 1' in metrics
    finally:
        for s in socks:
            s.close()
        server.stop()
    assert temp_uploads(server) == []


def test_a_stalled_or_trickling_upload_is_timed_out_and_leaves_no_temp_file(tmp_path, small_onnx):
    server = Server(tmp_path / "state", "--upload-idle-timeout", "1", "--upload-timeout", "4", "--workers", "0").start()
    try:
        stalled = stalled_upload(server)
        answer = answer_of(stalled)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"sent no data for 1 s" in answer
        assert temp_uploads(server) == []

        trickle = stalled_upload(server, sent=b"\x08")
        for _ in range(400):  # one byte every 0.25 s until the server answers: never idle for 1 s, never complete in 4 s
            readable, _, _ = select.select([trickle], [], [], 0.25)
            if readable:
                break
            trickle.sendall(b"\x07")
        answer = answer_of(trickle)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"not complete after 4 s" in answer
        assert temp_uploads(server) == []

        assert server.client().submit(small_onnx[0], ORT)["how"] == "created"  # the service still takes uploads
        assert 'sparsekit_rejected_uploads_total{reason="timeout"} 2' in httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
