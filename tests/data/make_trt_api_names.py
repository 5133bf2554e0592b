"""Regenerate tests/data/trt_api_names.json: which TensorRT Python names the kit uses exist in
the TensorRT 10.x and 11.x bindings and in the TensorRT-RTX bindings. Needs network access to
the package index (not run in CI).

It downloads the real bindings wheels (no libnvinfer needed), reads the names compiled into the
bindings' ``.so`` with ``strings``, and records, for every ``trt.X`` / ``.X`` attribute the
TensorRT build, runtime and runner code uses, whether each version has it. Names used only in
the TensorRT-RTX part (``sparsekit/backends/trt_rtx.py``) are checked against TensorRT-RTX alone.

Usage: python tests/data/make_trt_api_names.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Code shared by TensorRT and TensorRT-RTX: every name must exist in every wheel below.
SOURCES = ("sparsekit/backends/tensorrt_backend.py", "sparsekit/backends/trt_build.py", "sparsekit/backends/trt_runtime.py", "sparsekit/backends/trt_logger.py", "sparsekit/bench/trt_runner.py")
# TensorRT-RTX-only code: checked against the TensorRT-RTX bindings only.
RTX_SOURCES = ("sparsekit/backends/trt_rtx.py",)
WHEELS = {"10.16": "tensorrt-cu12-bindings==10.16.1.11", "11.4": "tensorrt-cu13-bindings==11.4.0.106", "rtx-1.7": "tensorrt-rtx-cu13-bindings==1.7.1.116"}
RTX_VERSIONS = ("rtx-1.7",)
METHODS = (
    "create_engine_inspector", "get_engine_information", "deserialize_cuda_engine", "parse_from_file", "num_errors", "get_error", "node", "node_name", "node_operator",
    "desc", "create_network", "get_tensor_name", "num_io_tensors", "get_tensor_mode", "get_tensor_dtype", "set_input_shape", "set_tensor_address", "get_tensor_shape",
    "execute_async_v3", "device_memory_size_v2", "create_execution_context", "WARNING", "INTERNAL_ERROR", "set_compute_capability", "num_compute_capabilities",
)


def used_names(sources: tuple[str, ...] = SOURCES) -> list[str]:
    """The TensorRT names the given source files use: ``trt.X[.Y]`` and known method/enum names."""
    src = "\n".join((ROOT / f).read_text() for f in sources)
    names = set(re.findall(r"(?<![.\w])trt\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?", src))
    flat = {n for pair in names for n in pair if n}
    flat |= set(re.findall(r"\.(" + "|".join(METHODS) + r")\b", src))
    return sorted(flat)


def tokens_of_so(path: Path) -> set[str]:
    """Identifier-like tokens in a shared object (what ``strings`` shows)."""
    out = subprocess.run(["strings", str(path)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", out))


def has_name(name: str, tokens: set[str]) -> bool:
    # Linkers merge a short string into the tail of a longer one ("INPUT" inside "..._INPUT"),
    # so a name also counts when a token ends with it.
    return name in tokens or any(tok.endswith(name) for tok in tokens)


def strings_of(wheel: Path) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            so = next(n for n in zf.namelist() if n.endswith(".so") and "tensorrt" in n)
            zf.extract(so, tmp)
        return tokens_of_so(Path(tmp) / so)


def main() -> int:
    shared, rtx_only = used_names(SOURCES), sorted(set(used_names(RTX_SOURCES)) - set(used_names(SOURCES)))
    result = {"names": shared, "rtx_names": rtx_only, "versions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, req in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, req], check=True)
            wheel = next(Path(tmp).glob(req.split("==")[0].replace("-", "_") + "-" + req.split("==")[1] + "*.whl"))
            present = strings_of(wheel)
            wanted = shared + (rtx_only if label in RTX_VERSIONS else [])
            result["versions"][label] = {n: has_name(n, present) for n in wanted}
    (ROOT / "tests" / "data" / "trt_api_names.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    missing = {v: [n for n, ok in d.items() if not ok] for v, d in result["versions"].items()}
    print(json.dumps(missing, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
