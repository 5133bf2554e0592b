"""``lazy_import``: a module declared at the top is imported on first attribute access, not before."""

import subprocess
import sys

import pytest

from sparsekit._lazy import lazy_import
from sparsekit.errors import MissingDependencyError


def test_the_module_is_imported_on_first_attribute_access_only():
    code = (
        "import sys\n"
        "from sparsekit._lazy import lazy_import\n"
        "colors = lazy_import('colorsys')\n"
        "print('colorsys' in sys.modules)\n"
        "print(colors.rgb_to_hsv(1.0, 0.0, 0.0))\n"
        "print('colorsys' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split("\n")[:3] == ["False", "(0.0, 1.0, 1.0)", "True"]


def test_a_missing_package_with_a_fix_raises_one_typed_error():
    proxy = lazy_import("sparsekit_has_no_such_package.sub", fix="pip install it")
    with pytest.raises(MissingDependencyError, match="sparsekit_has_no_such_package.sub") as info:
        proxy.anything  # noqa: B018
    assert info.value.fix == "pip install it"


def test_a_missing_package_without_a_fix_raises_the_import_error():
    with pytest.raises(ModuleNotFoundError):
        lazy_import("sparsekit_has_no_such_package").anything  # noqa: B018


def test_attributes_named_like_the_proxy_reach_the_module():
    json = lazy_import("json")
    assert json.load.__module__ == "json" and json.loads("[1]") == [1]
    assert "json" in repr(json) and "imported" in repr(json)
