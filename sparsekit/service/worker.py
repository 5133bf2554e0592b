"""One build, in a fresh process: validate the ONNX, build into the store, optionally benchmark.

Run as ``python -m sparsekit.service.worker REQUEST.json RESULT.json``. The request names the
ONNX file, the build spec, the store and whether to benchmark; the result (written atomically)
is ``{"ok": true, "key", "folder", "bench"}`` or ``{"ok": false, "error": {"stage", "message", "hint"}}``.
The worker never builds shell strings and takes every path from the request file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sparsekit._io import write_json_atomic


def _fail(stage: str, exc: BaseException) -> dict:
    from sparsekit.errors import SparsekitError

    if isinstance(exc, SparsekitError):
        return {"ok": False, "error": {"stage": stage, "message": exc.problem, "hint": exc.fix}}
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return {"ok": False, "error": {"stage": stage, "message": f"{type(exc).__name__}: {first}", "hint": "see the build log; report it if the ONNX is valid"}}


def validate_onnx(path: Path) -> None:
    """Parse and check the ONNX (never an engine): the parser's reason on failure."""
    import onnx

    from sparsekit.analyze.onnx_weights import load_onnx
    from sparsekit.errors import OnnxModelError

    model = load_onnx(path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxModelError(f"ONNX checker: {str(exc).strip().splitlines()[0]}", "re-export the model; the file is not valid ONNX") from exc
    if not model.graph.node:
        raise OnnxModelError("the ONNX graph has no nodes", "upload the exported model, not an empty file")


def benchmark(record, spec_backend: str, seconds: float = 2.0) -> dict:
    """Latency of the built artifact on this machine right after the build (batch from the ONNX)."""
    from sparsekit.bench.harness import BenchConfig, measure_single
    from sparsekit.export.export import input_spec_of

    inputs = input_spec_of(record.metadata["onnx"])
    config = BenchConfig(rounds=5, round_seconds=seconds / 5, warmup_seconds=0.2)
    if spec_backend == "tensorrt":
        from sparsekit.bench.trt_runner import TrtTimedRunner

        runner = TrtTimedRunner(record.artifact, inputs)
    else:
        from sparsekit.bench.ort_runner import OrtTimedRunner

        runner = OrtTimedRunner(record.artifact, inputs)
    stats = measure_single(runner, inputs.tensors[0].shape[0], config)
    return {"latency": stats.to_dict(), "settings": config.model_dump(), "inputs": inputs.to_dict(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_request(request: dict) -> dict:
    """Execute one build request (also called in-process by the Ray executor's task)."""
    from sparsekit.backends.build import build_engine
    from sparsekit.backends.spec import BuildSpec

    onnx_path = Path(request["onnx"])
    try:
        validate_onnx(onnx_path)
    except Exception as exc:
        return _fail("validate", exc)
    try:
        spec = BuildSpec.model_validate(request["spec"])
        record = build_engine(onnx_path, spec, request["store"])
    except Exception as exc:
        return _fail("build", exc)
    out = {"ok": True, "key": record.key, "folder": str(record.folder), "artifact": record.artifact.name, "cached": record.cached, "bench": None}
    if request.get("bench"):
        try:
            out["bench"] = benchmark(record, spec.backend)
        except Exception as exc:
            return {**_fail("benchmark", exc), "key": record.key, "folder": str(record.folder)}
    return out


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    result = run_request(request)
    write_json_atomic(argv[1], result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
