"""What clients see from a real server: spec refusals that name the field and range, and no
absolute server path in any answer (status, list, logs, errors, health)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.client import ServiceError
from tests.service.conftest import TOKEN, Server

ORT = BuildSpec(backend="onnxruntime")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ABSOLUTE_PATH = re.compile(r"""(?:^|[\s'"(=,\[])/(?:[^\s'"/]+/)+""")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("public") / "state", "--job-timeout", "600").start()
    yield s
    s.stop()


def test_invalid_specs_are_refused_with_field_and_range_and_nothing_is_stored(shared_server, small_onnx):
    body = small_onnx[0].read_bytes()
    cases = {
        '{"backend": "onnxruntime", "workspace_mib": 1e30}': ["workspace_mib = 1e+30", "from 16 to 1048576"],
        '{"backend": "onnxruntime", "shapes": {"input": {"min": [1, 32], "opt": [1, 32], "max": [1e15, 32]}}}': ["shapes.input.max[0]", "from 1 to 1048576"],
        '{"backend": "onnxruntime", "sparse": true, "bogus": 1}': ["unknown field 'bogus'"],
    }
    for spec, expected in cases.items():
        r = httpx.post(shared_server.url + "/v1/builds", content=body, headers={**AUTH, "X-Build-Spec": spec}, timeout=60)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "validation error for" not in detail
        for part in expected:
            assert part in detail, detail
    r = httpx.post(shared_server.url + "/v1/builds", params={"timeout_s": "1e9"}, content=body, headers={**AUTH, "X-Build-Spec": ORT.canonical_json()}, timeout=60)
    assert r.status_code == 422 and "timeout_s" in r.json()["detail"] and "600" in r.json()["detail"]
    assert [p.name for p in (shared_server.state / "uploads").iterdir()] == []


def test_no_absolute_server_path_in_any_answer(shared_server, small_onnx, tmp_path):
    c = shared_server.client()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx file at all")
    failed = c.submit(bad, ORT)["build"]
    with pytest.raises(ServiceError, match="validate"):
        c.wait(failed["id"], timeout=120)
    good = c.submit(small_onnx[1], ORT)["build"]
    assert c.wait(good["id"], timeout=120)["state"] == "SUCCEEDED"
    state = str(shared_server.state)
    http = httpx.Client(base_url=shared_server.url, headers=AUTH, timeout=60)
    answers = {
        "failed": http.get(f"/v1/builds/{failed['id']}").text,
        "failed logs": http.get(f"/v1/builds/{failed['id']}/logs").text,
        "good": http.get(f"/v1/builds/{good['id']}").text,
        "good logs": http.get(f"/v1/builds/{good['id']}/logs").text,
        "list": http.get("/v1/builds").text,
        "targets": http.get("/v1/targets").text,
        "healthz": http.get("/healthz").text,
        "readyz": http.get("/readyz").text,
    }
    error = json.loads(answers["failed"])["build"]["error"]
    assert error["stage"] == "validate" and "uploads/" in error["message"]  # named relative to the state folder
    assert "folder" not in json.loads(answers["good"])["build"]["result"]
    for name, text in answers.items():
        assert state not in text, name
        assert not ABSOLUTE_PATH.search(text), (name, ABSOLUTE_PATH.search(text).group(0))
