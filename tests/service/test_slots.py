"""The build slots survive a job store they cannot reach and a process out of file descriptors,
and ``/healthz`` fails while a slot cannot work: real servers, real limits, real files."""

from __future__ import annotations

import shutil
import socket

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from tests.service.conftest import Server, wait_until

ORT = BuildSpec(backend="onnxruntime")
FD_LIMIT = 64  # the server needs about 15 descriptors when idle


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to start the server with a low open-file limit")
def test_the_claim_loop_survives_too_many_open_files(tmp_path, small_onnx):
    # The per-address cap (32) would keep one client from using up the descriptors at all: lift it
    # and the header timeout here, to stand in for many clients holding connections at once.
    server = Server(tmp_path / "state", "--max-connections-per-ip", "10000", "--header-timeout", "3600", wrap=("prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}")).start()
    hogs: list[socket.socket] = []
    try:
        hogs = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(FD_LIMIT + 16)]  # idle connections hold the server's descriptors
        assert wait_until(lambda: "unable to open database file" in server.log_path.read_text(), timeout=60), "the slot never ran out of descriptors"
        for s in hogs:
            s.close()
        hogs = []
        c = server.client()
        job = c.submit(small_onnx[0], ORT)["build"]
        assert c.wait(job["id"], timeout=120)["state"] == "SUCCEEDED"
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        for s in hogs:
            s.close()
        server.stop()


def test_a_slot_that_cannot_reach_the_job_store_fails_healthz_then_recovers(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state, "--unhealthy-after", "1").start()
    db, aside = state / "jobs.db", state / "jobs.db.aside"
    try:
        db.rename(aside)
        db.mkdir()  # "unable to open database file" for everyone, as after losing the volume
        assert wait_until(lambda: httpx.get(server.url + "/healthz").status_code == 503, timeout=60), "healthz kept passing"
        health = httpx.get(server.url + "/healthz").json()
        assert health["status"] == "failing" and "build slot 0" in health["problems"][0] and "unable to open database file" in health["problems"][0]
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        db.rmdir()
        aside.rename(db)
        assert wait_until(lambda: httpx.get(server.url + "/healthz").status_code == 200, timeout=60), "the slot never recovered"
        c = server.client()
        job = c.submit(small_onnx[1], ORT)["build"]
        assert c.wait(job["id"], timeout=120)["state"] == "SUCCEEDED"
    finally:
        if aside.exists():
            if db.is_dir():
                db.rmdir()
            aside.rename(db)
        server.stop()
