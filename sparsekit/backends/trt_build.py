"""Build one TensorRT or TensorRT-RTX engine through Polygraphy, in a fresh process.

Polygraphy chooses between TensorRT and TensorRT-RTX once, when it is first imported, from the
``POLYGRAPHY_USE_TENSORRT_RTX`` environment variable; a process that has already imported it
(ModelOpt's ONNX tools do) cannot switch. So every engine build runs here, in a child process
started with its flavour's value of that variable: one build code path for both flavours.

The child writes into the build folder the engine (``engine.plan``), ``build.log`` (every
message TensorRT emitted, VERBOSE included, and Polygraphy's own lines) and, when the engine can
be deserialized here (a GPU is needed), ``inspector.json``. It reports success or a typed error
(kind, problem, fix) in a result file; the parent re-raises the error as the same type.

Run as ``python -m sparsekit.backends.trt_build REQUEST.json``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

from sparsekit._io import write_json_atomic
from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.trt_flavours import TrtFlavour, flavour_of
from sparsekit.backends.trt_logger import clean_trt_error, error_lines, make_trt_logger
from sparsekit.errors import EngineBuildError, OnnxModelError, SparsekitError
from sparsekit import errors
from sparsekit.backends.trt_rtx import set_target_compute_capabilities
import sparsekit

ENGINE = "engine.plan"
LOG = "build.log"
INSPECTOR = "inspector.json"
ENV_VAR = "POLYGRAPHY_USE_TENSORRT_RTX"

# ---------------------------------------------------------------- parent side


def run_trt_build(flavour: TrtFlavour, onnx_path: Path, spec: BuildSpec, out_dir: Path, timing_cache: Path | None = None, inspect: bool = True) -> dict:
    """Build ``onnx_path`` into ``out_dir`` in a child process with the flavour's Polygraphy.

    Args:
        flavour: TensorRT or TensorRT-RTX.
        onnx_path: a typed ONNX file (external data next to it is read by TensorRT's parser).
        spec: the build spec.
        out_dir: the private build folder; receives ``engine.plan``, ``build.log`` and maybe
            ``inspector.json``.
        timing_cache: timing-cache file to load and save (flavours without one ignore it).
        inspect: deserialize the engine for the inspector's per-layer tactics (needs a GPU).

    Returns:
        ``{"seconds": builder wall time, "inspector": whether inspector.json was written}``.

    Raises:
        OnnxModelError: TensorRT's parser rejected nodes (named in the message).
        EngineBuildError: the builder refused (e.g. a precision a target GPU lacks) or crashed.
        MissingDependencyError: the flavour's bindings or Polygraphy are not importable.
    """
    package_root = str(Path(sparsekit.__file__).resolve().parents[1])
    env = {**os.environ, ENV_VAR: "1" if flavour.polygraphy_rtx else "0", "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    with tempfile.TemporaryDirectory(prefix="sparsekit-trt-") as tmp:
        request = {
            "backend": flavour.backend, "onnx": str(Path(onnx_path).resolve()), "spec": spec.model_dump(mode="json"), "out_dir": str(Path(out_dir).resolve()),
            "timing_cache": str(timing_cache) if timing_cache and flavour.timing_cache else None, "inspect": inspect, "result": str(Path(tmp) / "result.json"),
        }
        write_json_atomic(Path(tmp) / "request.json", request)
        proc = subprocess.run([sys.executable, "-m", "sparsekit.backends.trt_build", str(Path(tmp) / "request.json")], env=env, capture_output=True, text=True, check=False)
        result_file = Path(request["result"])
        if not result_file.is_file():  # the process died (e.g. a crash inside TensorRT): its last words
            log_file = Path(out_dir) / LOG
            lines = proc.stderr.strip().splitlines() or (log_file.read_text(errors="replace").strip().splitlines() if log_file.is_file() else [])
            tail = lines[-1] if lines else "no output"
            raise EngineBuildError(f"the {flavour.title} build process ended without a result (exit {proc.returncode}): {tail}", "if TensorRT crashed, report it with the ONNX file and this message")
        result = json.loads(result_file.read_text())
    if not result["ok"]:
        error = result["error"]
        cls = getattr(errors, error["kind"], None)
        raise (cls if isinstance(cls, type) and issubclass(cls, SparsekitError) else EngineBuildError)(error["problem"], error["fix"])
    return {"seconds": result["seconds"], "inspector": result["inspector"]}


# ---------------------------------------------------------------- child side


def parse_onnx_errors(trt, onnx_path: str) -> list[str]:
    """Parse the ONNX with TensorRT's own parser and list its errors per node ([] if it parses)."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(onnx_path):
        return []
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        out.append(f"node {err.node()} ({err.node_name()}, {err.node_operator()}): {' '.join(str(err.desc()).split())}")
    return out


def _create_config(trt, flavour: TrtFlavour, spec: BuildSpec, timing_cache: str | None):
    """Polygraphy's ``CreateConfig`` for ``spec``, with only the options the flavour honours."""
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig, Profile

    profiles = None
    if spec.shapes:
        profile = Profile()
        for name, p in spec.shapes.items():
            profile.add(name, min=p.min, opt=p.opt, max=p.max)
        profiles = [profile]
    kwargs = {
        "sparse_weights": spec.sparse,
        "profiles": profiles,
        "memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: spec.workspace_mib << 20},
        "builder_optimization_level": spec.opt_level,
        "profiling_verbosity": trt.ProfilingVerbosity.DETAILED if spec.detailed_profiling else trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
    }
    if flavour.timing_cache and timing_cache:
        kwargs["load_timing_cache"] = timing_cache if Path(timing_cache).exists() else None
    if flavour.hardware_compat and spec.hardware_compat == "ampere_plus":
        kwargs["hardware_compatibility_level"] = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    config = CreateConfig(**kwargs)
    targets = flavour.targets(spec.compute_capabilities)
    if flavour.compute_capabilities and spec.compute_capabilities:
        return PostprocessConfig(config, lambda _builder, _network, cfg: set_target_compute_capabilities(trt, cfg, targets))
    return config


def _route_polygraphy_log(sink: Callable[[str], None]) -> None:
    """Send Polygraphy's own messages (build configuration, warnings) to the build log."""
    from polygraphy.logger import G_LOGGER

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sink(record.getMessage())

    G_LOGGER.use_python_logging_system = True
    poly = logging.getLogger("Polygraphy")
    poly.handlers[:] = [_Handler()]
    poly.setLevel(1)
    poly.propagate = False


def build_from_request(request: dict, sink: Callable[[str], None]) -> dict:
    """The child's work: build, write the engine, inspect it where possible."""
    flavour = flavour_of(request["backend"])
    spec = BuildSpec.model_validate(request["spec"])
    onnx_path, out_dir = request["onnx"], Path(request["out_dir"])
    from polygraphy import config as poly_config

    if poly_config.USE_TENSORRT_RTX != flavour.polygraphy_rtx:
        raise EngineBuildError(f"Polygraphy was imported for the wrong TensorRT flavour (wanted {flavour.title})", f"start the build process with {ENV_VAR}={'1' if flavour.polygraphy_rtx else '0'}")
    trt = flavour.import_module()
    _route_polygraphy_log(sink)
    import polygraphy.backend.trt.util as poly_trt_util
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    lines: list[str] = []

    def keep(text: str) -> None:
        lines.append(text)
        sink(text)

    logger = make_trt_logger(trt, keep)
    poly_trt_util.TRT_LOGGER = logger  # Polygraphy's loaders fetch the logger through get_trt_logger()
    network = NetworkFromOnnxPath(onnx_path, strongly_typed=True)
    config = _create_config(trt, flavour, spec, request["timing_cache"])
    save_cache = request["timing_cache"] if flavour.timing_cache else None
    start = time.perf_counter()
    try:
        engine_bytes = bytes(EngineBytesFromNetwork(network, config, save_timing_cache=save_cache)())
    except PolygraphyException as exc:
        errors = parse_onnx_errors(trt, onnx_path)
        if errors:
            raise OnnxModelError(f"{flavour.title} cannot parse '{onnx_path}': {'; '.join(errors[:5])}", "see the node(s) named; re-export with a supported opset or replace those ops") from exc
        reasons = [clean_trt_error(e) for e in error_lines(lines)] or [str(exc).splitlines()[0]]
        targets = flavour.targets(spec.compute_capabilities)
        where = f" for compute capability {', '.join(targets)}" if targets else ""
        fix = ("choose --compute-capability targets whose GPUs support the model's precision and ops (fp8 needs 8.9 or 12.x; 7.5 has no bf16, int8 or fp8 GEMMs), or export another precision"
               if flavour.compute_capabilities else "see build.log; check the ONNX's ops and precision against this TensorRT version")
        raise EngineBuildError(f"{flavour.title} refused to build '{onnx_path}'{where}: {reasons[0]}", fix) from exc
    seconds = time.perf_counter() - start
    (out_dir / ENGINE).write_bytes(engine_bytes)
    inspected = False
    if request["inspect"]:
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            sink("[sparsekit] the engine could not be deserialized on this machine: no engine-inspector evidence")
        else:
            info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
            (out_dir / INSPECTOR).write_text(info)
            inspected = True
    return {"ok": True, "seconds": round(seconds, 3), "inspector": inspected}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    with open(Path(request["out_dir"]) / LOG, "w", encoding="utf-8", buffering=1) as log_file:
        def sink(text: str) -> None:
            log_file.write(str(text).rstrip("\n") + "\n")

        try:
            result = build_from_request(request, sink)
        except SparsekitError as exc:
            result = {"ok": False, "error": {"kind": type(exc).__name__, "problem": exc.problem, "fix": exc.fix}}
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line; the traceback stays in build.log
            sink(traceback.format_exc())
            first = (str(exc).strip().splitlines() or [""])[0]
            result = {"ok": False, "error": {"kind": "EngineBuildError", "problem": f"the engine build failed: {type(exc).__name__}: {first}", "fix": "see build.log; report it if the ONNX is valid"}}
    write_json_atomic(request["result"], result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
