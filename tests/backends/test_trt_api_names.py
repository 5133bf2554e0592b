"""Every TensorRT name the kit uses was checked against the real 10.16, 11.4 and TensorRT-RTX 1.7
bindings.

tests/data/trt_api_names.json is produced by tests/data/make_trt_api_names.py from the bindings
wheels; these tests fail when the code starts using a name that was not checked (rerun the
script) or that a supported version lacks. Names of the TensorRT-RTX-only module are held to the
TensorRT-RTX bindings alone, and the installed TensorRT-RTX bindings are checked directly.
"""

import importlib.util
import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


def _names_module():
    spec = importlib.util.spec_from_file_location("make_names", DATA / "make_trt_api_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_uses_only_checked_names():
    module = _names_module()
    checked = json.loads((DATA / "trt_api_names.json").read_text())
    used = module.used_names()
    assert used, "no TensorRT names found in the backend source"
    unchecked = sorted(set(used) - set(checked["names"]))
    assert not unchecked, f"rerun tests/data/make_trt_api_names.py: unchecked names {unchecked}"
    assert set(checked["versions"]) >= {"10.16", "11.4", "rtx-1.7"}
    for version, present in checked["versions"].items():
        missing = [n for n in used if not present[n]]
        assert not missing, f"TensorRT {version} bindings lack {missing}"


def test_rtx_only_names_are_checked_against_rtx():
    module = _names_module()
    checked = json.loads((DATA / "trt_api_names.json").read_text())
    rtx_only = sorted(set(module.used_names(module.RTX_SOURCES)) - set(module.used_names()))
    assert "set_compute_capability" in rtx_only
    assert not set(rtx_only) - set(checked["rtx_names"]), "rerun tests/data/make_trt_api_names.py"
    for version in module.RTX_VERSIONS:
        assert all(checked["versions"][version][n] for n in rtx_only)
    for version in ("10.16", "11.4"):  # the split is real: regular TensorRT lacks them
        assert not any(n in checked["versions"][version] for n in rtx_only)


def test_installed_rtx_bindings_have_every_name():
    spec = importlib.util.find_spec("tensorrt_rtx_bindings")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorrt-rtx is not installed (pip install 'sparsekit[tensorrt-rtx]')")
    module = _names_module()
    so = next(Path(list(spec.submodule_search_locations)[0]).glob("tensorrt_rtx*.so"))
    tokens = module.tokens_of_so(so)
    wanted = set(module.used_names()) | set(module.used_names(module.RTX_SOURCES))
    assert [n for n in sorted(wanted) if not module.has_name(n, tokens)] == []
