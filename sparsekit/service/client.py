"""Client of the build service: submit an ONNX with a build spec, wait, download artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import httpx

from sparsekit._io import atomic_path
from sparsekit.backends.spec import BuildSpec
from sparsekit.errors import SparsekitError
from sparsekit.service.validation import build_spec_from


class ServiceError(SparsekitError):
    """The service refused a request or a build failed."""


class BuildClient:
    """Talks to ``sparsekit serve`` at ``server`` (``http://127.0.0.1:8700``)."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def _unreachable(self, exc: Exception) -> "ServiceError":
        return ServiceError(f"cannot reach the build service at {self.server} ({type(exc).__name__})", "start it with 'sparsekit serve' or check --server")

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self._http, method)(*args, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _check(self, resp):
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            fixes = {
                401: "pass a valid --token (or SPARSEKIT_TOKEN)", 408: "the upload stalled; check the connection and submit again", 413: "the ONNX exceeds the service's upload limit",
                422: "check the build spec and backend (GET /v1/targets)", 503: "the service is busy or not ready; submit again shortly", 507: "the service's disk is full; ask its operator to free space",
            }
            raise ServiceError(f"service answered {resp.status_code}: {detail}", fixes.get(resp.status_code, "see the service logs"))
        return resp

    def targets(self) -> list[dict]:
        return self._check(self._call("get", "/v1/targets")).json()["targets"]

    def submit(self, onnx_path: str | os.PathLike, spec: BuildSpec, bench: bool = False, timeout_s: float | None = None) -> dict:
        """Upload the ONNX and the spec. Returns ``{"build": {...}, "how": created|joined|cached}``.

        Args:
            onnx_path: the ONNX file, or a model archive (.tar, .tar.gz, .zip: one .onnx with
                its external-data files); streamed, never read whole.
            spec: the build spec.
            bench: benchmark the engine right after the build.
            timeout_s: wall-clock limit of this build in seconds (the service's limit if None).
        """
        path = Path(onnx_path)
        if not path.is_file():
            raise ServiceError(f"ONNX file '{path}' does not exist", "check the path")

        def body():
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk

        params = {"bench": str(bench).lower(), **({"timeout_s": str(timeout_s)} if timeout_s is not None else {})}
        resp = self._call("post", "/v1/builds", params=params, headers={"X-Build-Spec": spec.canonical_json(), "Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)}, content=body())
        return self._check(resp).json()

    def status(self, build_id: str) -> dict:
        return self._check(self._call("get", f"/v1/builds/{build_id}")).json()["build"]

    def wait(self, build_id: str, timeout: float = 3600, poll: float = 0.5, progress: Callable[[dict], None] = lambda b: None) -> dict:
        """Poll until the build is terminal; raise :class:`ServiceError` unless it SUCCEEDED."""
        end = time.monotonic() + timeout
        while True:
            build = self.status(build_id)
            progress(build)
            if build["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            if time.monotonic() > end:
                raise ServiceError(f"build {build_id} still {build['state']} after {timeout:.0f} s", "wait longer or check the service")
            time.sleep(poll)
        if build["state"] != "SUCCEEDED":
            err = build.get("error") or {}
            raise ServiceError(f"build {build_id} {build['state']} at {err.get('stage')}: {err.get('message')}", err.get("hint") or "see the build logs")
        return build

    def download(self, build_id: str, name: str, dest: str | os.PathLike) -> Path:
        """Download artifact ``name`` to ``dest`` atomically; the engine's sha256 is verified."""
        dest = Path(dest)
        try:
            stream = self._http.stream("GET", f"/v1/builds/{build_id}/artifacts/{name}")
            resp = stream.__enter__()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        try:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            digest = hashlib.sha256()
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_bytes():
                        digest.update(chunk)
                        fh.write(chunk)
                want = resp.headers.get("X-Sparsekit-SHA256")
                if want and want != digest.hexdigest():
                    raise ServiceError(f"downloaded {name} does not match its sha256", "download again")
        finally:
            stream.__exit__(None, None, None)
        return dest

    def logs(self, build_id: str) -> str:
        return self._check(self._call("get", f"/v1/builds/{build_id}/logs")).text

    def cancel(self, build_id: str) -> dict:
        resp = self._call("post", f"/v1/builds/{build_id}/cancel")
        return resp.json()


def load_spec(text: str | None, backend: str | None = None) -> BuildSpec:
    """A build spec from a JSON file path or inline JSON (None: defaults), with ``backend`` overriding."""
    data: dict = {}
    if text:
        p = Path(text)
        try:
            data = json.loads(p.read_text() if p.is_file() else text)
        except ValueError as exc:
            raise ServiceError(f"build spec '{text}' is neither a JSON file nor JSON", "give a file with a BuildSpec JSON or inline JSON") from exc
    if not isinstance(data, dict):
        raise ServiceError(f"build spec '{text}' is not a JSON object", "give a BuildSpec as a JSON object, e.g. '{\"backend\": \"onnxruntime\"}'")
    if backend:
        data["backend"] = backend
    return build_spec_from(data, fix="see 'sparsekit build --help' for the fields and their ranges")
