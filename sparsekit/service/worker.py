"""One build, in a fresh process: validate the ONNX, build into the store, optionally benchmark.

Run as ``python -m sparsekit.service.worker REQUEST.json RESULT.json``. The request names the
ONNX file, the build spec, the store and whether to benchmark; the result (written atomically)
is ``{"ok": true, "key", "folder", "bench"}`` or ``{"ok": false, "error": {"stage", "message", "hint"}}``.
The worker never builds shell strings and takes every path from the request file.

A worker outlives neither its server nor its deadline: a watchdog thread kills the worker's
process group when the server that started it is gone (its parent changed) or when the
request's deadline has passed. SIGTERM ends it cleanly (staging folder removed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from sparsekit._io import write_json_atomic
from sparsekit.onnx_io.load import load_onnx
from sparsekit.onnx_io.validate import load_validated_onnx
from sparsekit.backends.build import build_engine
from sparsekit.backends.onnx_external import external_data_files, refuse_external_data
from sparsekit.backends.spec import BuildSpec
from sparsekit.bench.harness import BenchConfig, measure_single
from sparsekit.errors import OnnxModelError, SparsekitError
from sparsekit.service.disk import MIB, free_bytes, storage_errno, storage_failure
from sparsekit.bench.ort_runner import OrtTimedRunner
from sparsekit.bench.trt_runner import TrtTimedRunner
from sparsekit.export.export import input_spec_of

WATCH_INTERVAL_S = 0.5


def _fail(stage: str, exc: BaseException) -> dict:
    if isinstance(exc, SparsekitError):
        return {"ok": False, "error": {"stage": stage, "message": exc.problem, "hint": exc.fix}}
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return {"ok": False, "error": {"stage": stage, "message": f"{type(exc).__name__}: {first}", "hint": "see the build log; report it if the ONNX is valid"}}


def _store_short(request: dict) -> str:
    """What is missing on the store's disk for this build ("" when there is room)."""
    store, need = Path(request["store"]), int(request.get("need_bytes") or 0)
    folder = store if store.is_dir() else store.parent
    try:
        free = free_bytes(folder)
    except OSError:
        return ""
    return f"{free / MIB:.1f} MiB free in the engine store, about {need / MIB:.1f} MiB needed" if free < need else ""


def _failed(stage: str, exc: BaseException, request: dict) -> dict:
    """A failure as the job's error: the service's disk is blamed when it is full or failing
    (a write cut short can surface as a model error, e.g. ONNX Runtime's INVALID_PROTOBUF)."""
    short = _store_short(request)
    if storage_errno(exc) is not None or short:
        return {"ok": False, "error": storage_failure(exc, short)}
    return _fail(stage, exc)


def validate_onnx(path: Path, archive: bool = False):
    """Parse and check the ONNX (never an engine): the parser's reason on failure.

    Args:
        path: the stored upload.
        archive: it came as a model archive (its own folder, checked when it arrived): external
            data is allowed under the rules of local builds (every tensor's declared bytes stored,
            every location a regular file inside the folder). A single-file upload shares the
            uploads folder with others, so any external-data reference is refused unread.

    Returns:
        The model, loaded without external data (the build goes on from it).
    """
    import onnx  # heavy: imported by the build, not by the server that imports this module

    if archive:
        model = load_validated_onnx(path)  # ONNX's checker included, on the path: the data files are located
        external_data_files(model, path)
    else:
        model = load_onnx(path, load_external_data=False)  # never open files the upload names
        refuse_external_data(model)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise OnnxModelError(f"ONNX checker: {str(exc).strip().splitlines()[0]}", "re-export the model; the file is not valid ONNX") from exc
    if not model.graph.node:
        raise OnnxModelError("the ONNX graph has no nodes", "upload the exported model, not an empty file")
    return model


def benchmark(record, spec_backend: str, seconds: float = 2.0) -> dict:
    """Latency of the built artifact on this machine right after the build (batch from the ONNX)."""
    inputs = input_spec_of(record.metadata["onnx"])
    config = BenchConfig(rounds=5, round_seconds=seconds / 5, warmup_seconds=0.2)
    if spec_backend in ("tensorrt", "tensorrt-rtx"):
        runner = TrtTimedRunner(record.artifact, inputs, backend=spec_backend)
    else:
        runner = OrtTimedRunner(record.artifact, inputs)
    stats = measure_single(runner, inputs.tensors[0].shape[0], config)
    return {"latency": stats.to_dict(), "settings": config.model_dump(), "inputs": inputs.to_dict(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_request(request: dict) -> dict:
    """Execute one build request (also called in-process by the Ray executor's task)."""
    onnx_path = Path(request["onnx"])
    try:
        model = validate_onnx(onnx_path, bool(request.get("archive")))
    except Exception as exc:
        return _failed("validate", exc, {**request, "need_bytes": 0})
    try:
        spec = BuildSpec.model_validate(request["spec"])
        record = build_engine(onnx_path, spec, request["store"], model=model)
    except Exception as exc:
        return _failed("build", exc, request)
    out = {"ok": True, "key": record.key, "folder": str(record.folder), "artifact": record.artifact.name, "cached": record.cached, "bench": None}
    if request.get("bench"):
        try:
            out["bench"] = benchmark(record, spec.backend)
        except Exception as exc:
            return {**_fail("benchmark", exc), "key": record.key, "folder": str(record.folder)}
    return out


def watch(parent_pid: int | None, deadline: float | None) -> threading.Thread:
    """Start the watchdog: SIGKILL this process group once ``parent_pid`` is no longer the parent
    (the server died) or the Unix time ``deadline`` has passed."""

    def run() -> None:
        while True:
            if parent_pid and os.getppid() != parent_pid:
                reason = "the build service that started this build is gone"
            elif deadline and time.time() > deadline:
                reason = "the build passed its deadline"
            else:
                time.sleep(WATCH_INTERVAL_S)
                continue
            print(f"sparsekit worker: {reason}; stopping", file=sys.stderr, flush=True)
            if os.getpgid(0) == os.getpid():  # started by the executor: this build's own group
                os.killpg(0, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=run, name="worker-watchdog", daemon=True)
    thread.start()
    return thread


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds the build: its staging folder is removed


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    signal.signal(signal.SIGTERM, _terminate)
    watch(request.get("parent_pid"), request.get("deadline"))
    result = run_request(request)
    write_json_atomic(argv[1], result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
