"""Build processes never outlive their server or their time limit, and a job is never built twice
at once: real servers, real workers, real signals (SIGSTOP freezes a worker mid-build so that the
test, not the machine's speed, decides where the build is when the server goes)."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from sparsekit.service.jobs import JobStore
from tests.service.conftest import Server, running, wait_until, worker_of

ORT = BuildSpec(backend="onnxruntime")


def test_sigterm_of_the_server_stops_its_worker_and_queues_the_job_again(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state).start()
    try:
        job = server.client().submit(small_onnx[0], ORT)["build"]
        pid = worker_of(state, job["id"])
        os.kill(pid, signal.SIGSTOP)  # a build that will not finish by itself
        server.signal(signal.SIGTERM)
    finally:
        server.stop()
    assert not running(pid), "the worker outlived its server"
    record = JobStore(state / "jobs.db").get(job["id"])
    assert record.state == "QUEUED" and record.worker_pid is None and record.attempts == 0
    assert not list((state / "engines").glob(".build-*"))
    again = Server(state).start()
    try:
        done = again.client().wait(job["id"], timeout=120)
        assert done["state"] == "SUCCEEDED" and done["attempts"] == 1
    finally:
        again.stop()


def test_after_kill_9_the_next_start_kills_the_old_worker_before_building_again(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state).start()
    try:
        job = server.client().submit(small_onnx[1], ORT)["build"]
        pid = worker_of(state, job["id"])
        os.kill(pid, signal.SIGSTOP)  # frozen: its own watchdog cannot act, only the next server can
        server.signal(signal.SIGKILL)
    finally:
        server.stop()
    assert running(pid), "the frozen worker should still be there after kill -9 of its server"
    again = Server(state).start()  # returns once /readyz answers: recovery is done
    try:
        assert not running(pid), "the old worker was still running when the job was queued again"
        done = again.client().wait(job["id"], timeout=120)
        assert done["state"] == "SUCCEEDED" and done["attempts"] == 2
        assert again.client().submit(small_onnx[1], ORT)["how"] == "cached"
    finally:
        again.stop()
        if running(pid):
            os.killpg(pid, signal.SIGKILL)


def test_an_orphaned_worker_stops_itself(tmp_path, small_onnx):
    state = tmp_path / "state"
    server = Server(state).start()
    try:
        job = server.client().submit(small_onnx[2], ORT)["build"]
        pid = worker_of(state, job["id"])
        os.kill(pid, signal.SIGSTOP)
        server.signal(signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)  # the worker runs on with no server: it must notice and stop
        assert wait_until(lambda: not running(pid), timeout=60), "the orphaned worker kept running"
    finally:
        server.stop()
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
    log = (state / "results" / job["id"] / "worker.log").read_text()
    assert "the build service that started this build is gone" in log
    assert not (state / "results" / job["id"] / "result.json").exists()


def test_the_time_limit_stops_a_hung_build_and_the_slot_serves_the_next_job(tmp_path, small_onnx):
    """The limit covers everything the worker does (ONNX checks, graph analysis, build): here it
    is frozen wherever it was, and only the limit can end it."""
    state = tmp_path / "state"
    server = Server(state, "--job-timeout", "600").start()
    try:
        c = server.client()
        hung = c.submit(small_onnx[3], ORT, timeout_s=2)["build"]
        pid = worker_of(state, hung["id"])
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ServiceError, match="timeout"):
            c.wait(hung["id"], timeout=120)
        error = c.status(hung["id"])["error"]
        assert error["stage"] == "timeout" and "2 s limit" in error["message"]
        assert wait_until(lambda: not running(pid), timeout=30), "the timed-out build is still running"
        nxt = c.submit(small_onnx[4], ORT)["build"]
        assert c.wait(nxt["id"], timeout=120)["state"] == "SUCCEEDED"
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
