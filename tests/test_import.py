"""`import sparsekit` must be light: no torch, ONNX, TensorRT or CUDA at import time."""

import subprocess
import sys


def test_import_loads_no_heavy_modules():
    code = (
        "import sys, sparsekit\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'modelopt', 'pycuda', 'cuda') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_resolves_lazily():
    import sparsekit

    for name in sparsekit.__all__:
        assert callable(getattr(sparsekit, name)) or isinstance(getattr(sparsekit, name), type)


def test_unknown_attribute_raises():
    import pytest

    import sparsekit

    with pytest.raises(AttributeError):
        sparsekit.does_not_exist  # noqa: B018


def test_checking_an_onnx_file_imports_no_torch(exported):
    """`sparsekit check model.onnx` reads the file with onnx and numpy only (it starts in about a second)."""
    onnx_path = exported[("mlp", "fp16")].path
    code = (
        "import sys\n"
        "from sparsekit.cli.main import main\n"
        f"code = main(['check', {str(onnx_path)!r}])\n"
        "print(code, ','.join(m for m in ('torch', 'modelopt', 'onnxruntime', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].split(" ") == ["0", ""], out.stdout  # exit 0, no heavy module
