"""The build service end to end on loopback with the onnxruntime backend, a real server process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from tests.service.conftest import TOKEN, Server

ORT = BuildSpec(backend="onnxruntime")


def test_submit_build_download(server, small_onnx, tmp_path):
    c = server.client()
    assert any(t["backend"] == "onnxruntime" and t["available"] for t in c.targets())
    answer = c.submit(small_onnx[0], ORT, bench=True)
    assert answer["how"] == "created" and answer["build"]["state"] == "QUEUED"
    build = c.wait(answer["build"]["id"], timeout=120)
    assert build["started"] >= build["created"] and build["finished"] >= build["started"]
    engine = c.download(build["id"], "engine", tmp_path / "model.ort.onnx")
    meta = json.loads(c.download(build["id"], "metadata.json", tmp_path / "metadata.json").read_text())
    assert hashlib.sha256(engine.read_bytes()).hexdigest() == meta["artifact_sha256"]
    report = json.loads(c.download(build["id"], "report.json", tmp_path / "report.json").read_text())
    assert report["summary"]["layers"] == 3
    bench = json.loads(c.download(build["id"], "benchmark.json", tmp_path / "bench.json").read_text())
    assert bench["latency"]["median"] > 0
    assert "sparsekit" in httpx.get(server.url + "/openapi.json").text
    again = c.submit(small_onnx[0], ORT, bench=True)
    assert again["how"] == "cached" and again["build"]["id"] == build["id"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'sparsekit_builds{state="SUCCEEDED"} 1' in metrics and "sparsekit_cache_hits_total 1" in metrics


def test_concurrent_identical_and_distinct_submits(server, small_onnx):
    c_http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    payloads = [p.read_bytes() for p in small_onnx]

    def submit(i: int):
        body = payloads[0] if i % 2 == 0 else payloads[1 + (i // 2) % 4]  # 25 identical + 25 over 4 distinct files
        r = c_http.post("/v1/builds", content=body, headers={"X-Build-Spec": ORT.canonical_json()})
        assert r.status_code in (200, 202), r.text
        return r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(submit, range(50)))
    ids = {a["build"]["id"] for a in answers}
    assert len(ids) == 5  # one job per distinct request: no duplicate builds, none lost
    client = server.client()
    for job_id in ids:
        assert client.wait(job_id, timeout=300)["state"] == "SUCCEEDED"
    builds = c_http.get("/v1/builds").json()["builds"]
    assert len(builds) == 5 and all(b["attempts"] == 1 for b in builds)
    hows = [a["how"] for a in answers]
    assert hows.count("created") == 5 and hows.count("joined") + hows.count("cached") == 45


def test_kill_worker_mid_build(tmp_path):
    from sparsekit.export.export import export_
    from sparsekit.models.source import load_model

    big = export_(load_model("bert", {"layers": 6, "hidden": 512, "ffn": 2048, "heads": 8}), "fp32", tmp_path / "big.onnx").path
    server = Server(tmp_path / "state").start()
    try:
        c = server.client()
        job = c.submit(big, ORT)["build"]
        db_pid = None
        end = time.monotonic() + 60
        from sparsekit.service.jobs import JobStore

        store = JobStore(server.state / "jobs.db")
        while time.monotonic() < end and db_pid is None:
            db_pid = store.get(job["id"]).worker_pid
            time.sleep(0.01)
        assert db_pid, "the worker never started"
        os.kill(db_pid, signal.SIGKILL)
        with pytest.raises(ServiceError, match="died"):
            c.wait(job["id"], timeout=60)
        engines = server.state / "engines"
        assert not [p for p in engines.iterdir() if not p.name.startswith("timing")] if engines.exists() else True
        assert httpx.get(server.url + "/healthz").status_code == 200
        ok = c.submit(tmp_path / "big.onnx", BuildSpec(backend="onnxruntime", opt_level=2))
        assert c.wait(ok["build"]["id"], timeout=120)["state"] == "SUCCEEDED"
    finally:
        server.stop()


def test_restart_keeps_state_and_resumes_queued(tmp_path, small_onnx):
    state = tmp_path / "state"
    idle = Server(state, "--workers", "0").start()
    try:
        queued = idle.client().submit(small_onnx[2], ORT)["build"]
        assert idle.client().status(queued["id"])["state"] == "QUEUED"
    finally:
        idle.stop()
    busy = Server(state).start()
    try:
        done = busy.client().wait(queued["id"], timeout=120)
        assert done["state"] == "SUCCEEDED" and done["id"] == queued["id"]
    finally:
        busy.stop()
    again = Server(state).start()
    try:
        assert again.client().status(queued["id"])["state"] == "SUCCEEDED"
        assert again.client().submit(small_onnx[2], ORT)["how"] == "cached"
    finally:
        again.stop()


def test_corrupt_onnx_fails_with_the_parser_reason(server, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + os.urandom(300))
    c = server.client()
    job = c.submit(bad, ORT)["build"]
    with pytest.raises(ServiceError, match="validate"):
        c.wait(job["id"], timeout=60)
    err = c.status(job["id"])["error"]
    assert err["stage"] == "validate" and "ONNX" in err["message"]


def test_an_upload_that_references_external_data_is_refused_unread(server, small_onnx, tmp_path):
    """An upload is one file: a location (here the server's /etc/passwd) is never resolved."""
    import onnx

    model = onnx.load(str(small_onnx[0]))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    pointing = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    for tensor in pointing.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "/etc/passwd"
    upload = tmp_path / "upload.onnx"
    upload.write_bytes(pointing.SerializeToString())
    c = server.client()
    job = c.submit(upload, ORT)["build"]
    with pytest.raises(ServiceError, match="validate"):
        c.wait(job["id"], timeout=60)
    err = c.status(job["id"])["error"]
    assert err["stage"] == "validate" and "external data" in err["message"] and "passwd" in err["message"]
    assert "/etc/" not in err["message"]  # the service names no server path, not even the one asked for


def test_oversized_upload_is_413_and_nothing_is_stored(tmp_path, small_onnx):
    server = Server(tmp_path / "state", "--max-upload-mib", "1").start()
    try:
        big = tmp_path / "big.onnx"
        big.write_bytes(os.urandom(3 << 20))
        with pytest.raises(ServiceError, match="413"):
            server.client().submit(big, ORT)
        # also when the client lies about the length and streams more
        def chunks():
            for _ in range(3):
                yield os.urandom(1 << 20)

        r = httpx.post(server.url + "/v1/builds", content=chunks(), headers={"Authorization": f"Bearer {TOKEN}", "X-Build-Spec": ORT.canonical_json()}, timeout=60)
        assert r.status_code == 413
        assert list((server.state / "uploads").iterdir()) == []
        assert server.client().status  # service still answers
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()


def test_tokens(server, small_onnx):
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"}, {"Authorization": TOKEN}):
        r = httpx.get(server.url + "/v1/targets", headers=headers)
        assert r.status_code == 401
    with pytest.raises(ServiceError, match="401"):
        server.client(token="nope-nope-nope-nope").submit(small_onnx[0], ORT)
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_cancel_and_terminal_states_are_immutable(tmp_path, small_onnx):
    server = Server(tmp_path / "state", "--workers", "0").start()
    try:
        c = server.client()
        job = c.submit(small_onnx[3], ORT)["build"]
        assert c.cancel(job["id"])["cancelled"]
        second = c.cancel(job["id"])
        assert not second["cancelled"] and second["build"]["state"] == "CANCELLED"
    finally:
        server.stop()


def test_refuses_non_loopback_without_tokens(cli):
    proc = cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2 and "without bearer tokens" in proc.stderr


def test_ray_executor_on_a_local_ray_cluster(tmp_path, small_onnx, monkeypatch):
    """Same service, `--executor ray`: the service starts a local Ray cluster (on loopback) and
    routes each build to a Ray task in its own worker process."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    server = Server(tmp_path / "state", "--executor", "ray").start()
    try:
        c = server.client()
        ids = {c.submit(p, ORT)["build"]["id"] for p in small_onnx[:3]}
        ids.add(c.submit(small_onnx[0], ORT)["build"]["id"])  # joins or hits the first
        assert len(ids) == 3
        for job_id in ids:
            assert c.wait(job_id, timeout=300)["state"] == "SUCCEEDED"
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"garbage")
        with pytest.raises(ServiceError, match="validate"):
            c.wait(c.submit(bad, ORT)["build"]["id"], timeout=120)
    finally:
        server.stop()
