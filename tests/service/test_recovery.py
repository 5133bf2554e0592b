"""What a starting server cleans up after a killed one, and one state folder per server."""

from __future__ import annotations

import signal

from sparsekit.backends.spec import BuildSpec
from tests.service.conftest import Server

ORT = BuildSpec(backend="onnxruntime")


def test_start_removes_what_killed_servers_left_and_keeps_what_jobs_need(tmp_path, small_onnx, cli):
    state = tmp_path / "state"
    first = Server(state, "--workers", "0").start()
    try:
        queued = first.client().submit(small_onnx[0], ORT)["build"]
        first.signal(signal.SIGKILL)
    finally:
        first.stop()
    kept = state / "uploads" / f"{queued['request']['onnx_sha256']}.onnx"
    assert kept.is_file()
    staging = state / "engines" / ".build-0123456789ab-x1y2z3"
    staging.mkdir(parents=True)
    (staging / "model.ort.onnx").write_bytes(b"half an engine")
    partial = state / "uploads" / ".upload-0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
    partial.write_bytes(b"half an upload")
    orphan = state / "uploads" / ("ab" * 32 + ".onnx")
    orphan.write_bytes(b"an upload whose job was never written")
    half_result = state / "results" / queued["id"] / ".result.json.abcd.tmp"
    half_result.parent.mkdir(parents=True)
    half_result.write_text("{")

    again = Server(state, "--workers", "0").start()
    try:
        assert not staging.exists() and not partial.exists() and not orphan.exists() and not half_result.exists()
        assert kept.is_file()
        assert again.client().status(queued["id"])["state"] == "QUEUED"
        second = cli("serve", "--port", "0", "--state-dir", str(state))
        assert second.returncode == 2 and "another 'sparsekit serve' is using the state folder" in second.stderr
        assert "Traceback" not in second.stderr
        assert again.client().status(queued["id"])["state"] == "QUEUED"  # the refused server touched nothing
    finally:
        again.stop()
