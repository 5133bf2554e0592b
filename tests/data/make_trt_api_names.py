"""Regenerate tests/data/trt_api_names.json: which TensorRT Python names the kit uses exist in
the 10.x and 11.x bindings. Needs network access to the package index (not run in CI).

It downloads the real bindings wheels (no libnvinfer needed), reads the names compiled into
``tensorrt.so`` with ``strings``, and records, for every ``trt.X`` / ``.X`` attribute the
TensorRT backend and runner use, whether each version has it.

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
SOURCES = ("sparsekit/backends/tensorrt_backend.py", "sparsekit/bench/trt_runner.py")
WHEELS = {"10.16": "tensorrt-cu12-bindings==10.16.1.11", "11.4": "tensorrt-cu13-bindings==11.4.0.106"}


def used_names() -> list[str]:
    src = "\n".join((ROOT / f).read_text() for f in SOURCES)
    names = set(re.findall(r"(?<![.\w])trt\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?", src))
    flat = {n for pair in names for n in pair if n}
    flat |= set(re.findall(r"\.(create_engine_inspector|get_engine_information|deserialize_cuda_engine|parse_from_file|num_errors|get_error|node_name|node_operator|desc|create_network|get_tensor_name|num_io_tensors|get_tensor_mode|get_tensor_dtype|set_input_shape|set_tensor_address|get_tensor_shape|execute_async_v3|device_memory_size_v2|create_execution_context)\b", src))
    return sorted(flat)


def strings_of(wheel: Path) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            so = next(n for n in zf.namelist() if n.endswith(".so") and "tensorrt" in n)
            zf.extract(so, tmp)
        out = subprocess.run(["strings", str(Path(tmp) / so)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", out))


def main() -> int:
    names = used_names()
    result = {"names": names, "versions": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, req in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, req], check=True)
            wheel = next(Path(tmp).glob(req.split("==")[0].replace("-", "_") + "-" + req.split("==")[1] + "*.whl"))
            present = strings_of(wheel)
            # Linkers merge a short string into the tail of a longer one ("INPUT" inside
            # "..._INPUT"), so a name also counts when a token ends with it.
            result["versions"][label] = {n: n in present or any(tok.endswith(n) for tok in present) for n in names}
    (ROOT / "tests" / "data" / "trt_api_names.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    missing = {v: [n for n, ok in d.items() if not ok] for v, d in result["versions"].items()}
    print(json.dumps(missing, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
