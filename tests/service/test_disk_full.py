"""A full disk, for real: each server runs in its own user and mount namespace (``unshare -rm``,
no root needed) with small tmpfs filesystems mounted over parts of its state folder. The test sees
the server's files through ``/proc/PID/root``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from tests.service.conftest import TOKEN, Server, wait_until

ORT = BuildSpec(backend="onnxruntime")
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Build-Spec": ORT.canonical_json()}


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged user and mount namespaces (unshare -rm) to mount a small tmpfs")


def on_small_disks(state, mounts: dict[str, str]) -> tuple[str, ...]:
    """A command prefix that mounts a tmpfs of the given size at each folder under ``state``
    (``{"": "4m", "uploads": "2m"}``; "" is the state folder itself), then execs the server."""
    script = " && ".join(f'mkdir -p "$0/{sub}" && mount -t tmpfs -o size={size} tmpfs "$0/{sub}"' for sub, size in mounts.items())
    return ("unshare", "-rm", "sh", "-c", script + ' && exec "$@"', str(state))


def files_in(server: Server, sub: str) -> list[str]:
    folder = server.view(server.state / sub)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_upload_to_a_full_disk_is_507_keeps_nothing_and_turns_readiness_off(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state, "--min-free-mib", "0", "--workers", "0", wrap=on_small_disks(state, {"": "8m", "uploads": "2m"})).start()
    try:
        def three_mib():  # chunked: no length announced, so the disk fills while writing
            for _ in range(48):
                yield os.urandom(64 << 10)

        r = httpx.post(server.url + "/v1/builds", content=three_mib(), headers=AUTH, timeout=60)
        assert r.status_code == 507, r.text
        assert "disk full" in r.json()["detail"] and "uploads folder" in r.json()["detail"]
        assert str(state) not in r.text
        assert files_in(server, "uploads") == []
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "disk full" in ready.json()["reason"]
        big = tmp_path / "big.onnx"
        big.write_bytes(os.urandom(3 << 20))
        with pytest.raises(ServiceError, match="507"):  # announced size: refused before a byte is written
            server.client().submit(big, ORT)
        assert files_in(server, "uploads") == []
        assert 'sparsekit_rejected_uploads_total{reason="disk_full"} 2' in httpx.get(server.url + "/metrics").text
    finally:
        server.stop()


def test_a_full_job_store_disk_leaves_no_upload_without_a_job(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state, "--min-free-mib", "0", "--workers", "0", wrap=on_small_disks(state, {"": "4m", "uploads": "8m"})).start()
    filler = server.view(state / "filler")
    try:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * (64 << 10)):
                pass
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC: the state folder's disk is full now
        finally:
            os.close(fd)
        with pytest.raises(ServiceError, match="507.*disk full"):
            server.client().submit(small_onnx[0], ORT)
        assert files_in(server, "uploads") == []  # the upload was received, then removed with the job that could not be written
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "disk full" in ready.json()["reason"] and "state folder" in ready.json()["reason"]
        filler.unlink()
        assert wait_until(lambda: httpx.get(server.url + "/readyz").status_code == 200, timeout=30), "readiness did not come back with free space"
        answer = server.client().submit(small_onnx[0], ORT)
        assert answer["how"] == "created" and answer["build"]["state"] == "QUEUED"
        assert files_in(server, "uploads") == [f"{answer['build']['request']['onnx_sha256']}.onnx"]
    finally:
        server.stop()


def test_a_full_engine_store_fails_the_build_as_a_disk_problem_not_a_model_problem(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state, "--min-free-mib", "0", wrap=on_small_disks(state, {"engines": "128k"})).start()
    try:
        c = server.client()
        job = c.submit(small_onnx[4], ORT)["build"]  # 460 KB of weights: its optimized copy cannot fit
        with pytest.raises(ServiceError, match="storage"):
            c.wait(job["id"], timeout=120)
        error = c.status(job["id"])["error"]
        assert error["stage"] == "storage" and "disk full" in error["message"]
        assert "not a problem with the model" in error["hint"]
        assert "re-export" not in str(error) and "INVALID_PROTOBUF" not in str(error)
        assert not re.search(r"""(?:^|[\s'"(])/\w""", str(error)), error
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "engine store" in ready.json()["reason"]
        assert [n for n in files_in(server, "engines") if n.startswith(".build-")] == []
    finally:
        server.stop()
