"""Every TensorRT name the backend uses was checked against the real 10.16 and 11.4 bindings.

tests/data/trt_api_names.json is produced by tests/data/make_trt_api_names.py from the bindings
wheels; this test fails when the backend starts using a name that was not checked (rerun the
script) or that a supported TensorRT version lacks.
"""

import importlib.util
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


def test_backend_uses_only_checked_names():
    spec = importlib.util.spec_from_file_location("make_names", DATA / "make_trt_api_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checked = json.loads((DATA / "trt_api_names.json").read_text())
    used = module.used_names()
    assert used, "no TensorRT names found in the backend source"
    unchecked = sorted(set(used) - set(checked["names"]))
    assert not unchecked, f"rerun tests/data/make_trt_api_names.py: unchecked names {unchecked}"
    for version, present in checked["versions"].items():
        missing = [n for n in used if not present[n]]
        assert not missing, f"TensorRT {version} bindings lack {missing}"
