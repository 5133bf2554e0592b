"""Builds belong to the token that submitted them: another token gets 404 for them (as for a build
that does not exist) and an empty list; admin tokens see every build; the content cache still
serves another token's identical build, as a job of its own."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from sparsekit.service.jobs import QUEUED, RUNNING, SUCCEEDED, JobStore
from tests.service.conftest import Server

ORT = BuildSpec(backend="onnxruntime")
TOKEN_A = "owner-a-token-0123456789abcdef"
TOKEN_B = "owner-b-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef00"
ENV = {"SPARSEKIT_TOKENS": f"{TOKEN_A},{TOKEN_B}", "SPARSEKIT_ADMIN_TOKENS": ADMIN}
MISSING = "0" * 32  # a well-formed id no build has


def call(server: Server, token: str, method: str, path: str) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def assert_hidden(server: Server, token: str, job_id: str) -> None:
    """Every route of ``job_id`` answers ``token`` exactly as for a build that does not exist."""
    routes = [
        ("GET", ""),
        ("GET", "/logs"),
        ("GET", "/artifacts/engine"),
        ("GET", "/artifacts/metadata.json"),
        ("GET", "/artifacts/build.log"),
        ("POST", "/cancel"),
    ]
    for method, tail in routes:
        r = call(server, token, method, f"/v1/builds/{job_id}{tail}")
        missing = call(server, token, method, f"/v1/builds/{MISSING}{tail}")
        assert r.status_code == missing.status_code == 404, (tail, r.status_code, r.text)
        assert r.json()["detail"].replace(job_id, MISSING) == missing.json()["detail"]


def listed(server: Server, token: str) -> set[str]:
    r = call(server, token, "GET", "/v1/builds")
    assert r.status_code == 200
    return {b["id"] for b in r.json()["builds"]}


@pytest.fixture
def idle(tmp_path):
    """A server that queues builds and runs none, with two user tokens and an admin token."""
    server = Server(tmp_path / "state", "--workers", "0", env=ENV).start()
    yield server
    server.stop()


def test_another_token_cannot_see_list_or_cancel_a_queued_build(idle, small_onnx):
    a, b = idle.client(TOKEN_A), idle.client(TOKEN_B)
    job = a.submit(small_onnx[0], ORT)["build"]
    assert_hidden(idle, TOKEN_B, job["id"])
    assert listed(idle, TOKEN_B) == set()
    assert a.status(job["id"])["state"] == QUEUED  # B's cancel did nothing
    assert listed(idle, TOKEN_A) == {job["id"]}

    mine = b.submit(small_onnx[0], ORT)  # identical request: B's own job, not a join of A's
    assert mine["how"] == "created" and mine["build"]["id"] != job["id"]
    assert job["id"] not in json.dumps(mine)
    assert listed(idle, TOKEN_B) == {mine["build"]["id"]}
    assert listed(idle, TOKEN_A) == {job["id"]}
    assert b.submit(small_onnx[0], ORT)["build"]["id"] == mine["build"]["id"]  # B's repeat joins B's own

    assert listed(idle, ADMIN) == {job["id"], mine["build"]["id"]}
    assert call(idle, ADMIN, "GET", f"/v1/builds/{job['id']}").status_code == 200
    assert call(idle, ADMIN, "POST", f"/v1/builds/{mine['build']['id']}/cancel").json()["cancelled"]
    assert b.status(mine["build"]["id"])["state"] == "CANCELLED"
    with pytest.raises(ServiceError, match="404"):
        b.status(job["id"])


def test_a_cached_build_is_served_to_another_token_as_its_own_job(tmp_path, small_onnx):
    server = Server(tmp_path / "state", env=ENV).start()
    try:
        a, b = server.client(TOKEN_A), server.client(TOKEN_B)
        job = a.wait(a.submit(small_onnx[1], ORT)["build"]["id"], timeout=180)
        assert job["state"] == SUCCEEDED
        engine_a = a.download(job["id"], "engine", tmp_path / "a" / "engine.onnx")
        assert_hidden(server, TOKEN_B, job["id"])
        assert listed(server, TOKEN_B) == set()

        again = b.submit(small_onnx[1], ORT)
        mine = again["build"]
        assert again["how"] == "cached" and mine["state"] == SUCCEEDED and mine["id"] != job["id"]
        assert job["id"] not in json.dumps(again)
        engine_b = b.download(mine["id"], "engine", tmp_path / "b" / "engine.onnx")
        assert hashlib.sha256(engine_b.read_bytes()).digest() == hashlib.sha256(engine_a.read_bytes()).digest()
        logs = call(server, TOKEN_B, "GET", f"/v1/builds/{mine['id']}/logs")
        assert logs.status_code == 200 and job["id"] not in logs.text
        assert b.submit(small_onnx[1], ORT)["build"]["id"] == mine["id"]  # B's own cache hit from now on
        assert_hidden(server, TOKEN_A, mine["id"])
        assert listed(server, TOKEN_A) == {job["id"]} and listed(server, TOKEN_B) == {mine["id"]}
        assert listed(server, ADMIN) == {job["id"], mine["id"]}
    finally:
        server.stop()


def test_builds_from_before_owners_were_kept_are_for_admins_only(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "jobs.db")  # the job table as it was before the owner column
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL, request TEXT NOT NULL, onnx_path TEXT NOT NULL, created REAL NOT NULL, "
        "started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0, worker_pid INTEGER, worker_start INTEGER, error TEXT, result TEXT)"
    )
    old = "a" * 32
    db.execute(
        "INSERT INTO jobs (id, key, state, request, onnx_path, created, finished, error) VALUES (?, 'k', 'FAILED', ?, 'uploads/x.onnx', 1.0, 2.0, ?)",
        (old, json.dumps({"spec": {"backend": "onnxruntime"}}), json.dumps({"stage": "build", "message": "m", "hint": ""})),
    )
    db.commit()
    db.close()
    server = Server(state, "--workers", "0", env=ENV).start()
    try:
        for token in (TOKEN_A, TOKEN_B):
            assert_hidden(server, token, old)
            assert listed(server, token) == set()
        assert listed(server, ADMIN) == {old}
        assert call(server, ADMIN, "GET", f"/v1/builds/{old}").json()["build"]["state"] == "FAILED"
    finally:
        server.stop()


def test_job_records_keep_no_token_and_show_no_owner(tmp_path, idle, small_onnx):
    job = idle.client(TOKEN_A).submit(small_onnx[2], ORT)["build"]
    assert "owner" not in job
    dump = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("jobs.db*"))  # with the write-ahead log
    assert job["id"].encode() in dump
    assert TOKEN_A.encode() not in dump and TOKEN_B.encode() not in dump


def test_store_hits_and_joins_stay_within_an_owner(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    a, how = store.submit("k", {"spec": {}}, "u.onnx", owner="A")
    assert how == "created"
    assert store.submit("k", {"spec": {}}, "u.onnx", owner="A") == (a, "joined")
    b, how = store.submit("k", {"spec": {}}, "u.onnx", owner="B")
    assert how == "created" and b.id != a.id and b.owner == "B"
    claimed = store.claim_next()
    assert claimed.id == a.id and claimed.state == RUNNING
    assert store.claim_next() is None  # B's identical job waits while A's is built
    store.finish(a.id, SUCCEEDED, result={"ok": True, "folder": "engines/k", "artifact": "model.onnx", "cached": False})
    assert store.claim_next().id == b.id  # then runs (and finds the engine in the store)
    c, how = store.submit("k", {"spec": {}}, "u.onnx", owner="C")
    assert how == "cached" and c.id not in (a.id, b.id) and c.owner == "C" and c.state == SUCCEEDED
    assert c.result["folder"] == "engines/k" and c.result["cached"] and c.started is None
    assert store.submit("k", {"spec": {}}, "u.onnx", owner="C") == (c, "cached")
    assert store.submit("k", {"spec": {}}, "u.onnx", owner="A")[0].id == a.id
    assert [j.id for j in store.list(owner="C")] == [c.id]
    assert {j.id for j in store.list(everyone=True)} == {a.id, b.id, c.id}
    assert store.list(owner=None) == []


def test_admin_tokens_alone_enable_auth_and_are_read_like_user_tokens(monkeypatch, tmp_path):
    from sparsekit.errors import ServiceConfigError
    from sparsekit.service.settings import ServiceSettings, read_tokens

    monkeypatch.setenv("SPARSEKIT_ADMIN_TOKENS", f"{ADMIN}, ")
    admins = read_tokens(None, env="SPARSEKIT_ADMIN_TOKENS")
    assert admins == (ADMIN,)
    settings = ServiceSettings.from_options(host="0.0.0.0", admin_tokens=admins, state_dir=tmp_path)
    assert settings.auth_enabled and settings.tokens == ()
    with pytest.raises(ServiceConfigError, match="without bearer tokens"):
        ServiceSettings.from_options(host="0.0.0.0", state_dir=tmp_path)
