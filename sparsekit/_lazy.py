"""Heavy optional packages declared at the top of a module, imported on first use.

``mts = lazy_import("modelopt.torch.sparsity")`` at module top keeps the import graph readable
(every dependency of a module is listed where its imports are) while ``import sparsekit`` and
``sparsekit --help`` load neither ModelOpt, ONNX Runtime, TensorRT, transformers nor matplotlib:
the package is imported the first time an attribute of the proxy is read.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from sparsekit.errors import MissingDependencyError


class LazyModule:
    """Stands for the module ``name`` until an attribute is read, then imports it and delegates.

    Args:
        name: the dotted module name (``"matplotlib.pyplot"``).
        fix: when given, a failed import raises :class:`MissingDependencyError` with this fix;
            otherwise the ``ImportError`` itself propagates.
    """

    __slots__ = ("_lazy_name", "_lazy_fix", "_lazy_module")

    def __init__(self, name: str, fix: str | None = None) -> None:
        object.__setattr__(self, "_lazy_name", name)
        object.__setattr__(self, "_lazy_fix", fix)
        object.__setattr__(self, "_lazy_module", None)

    def _lazy_load(self) -> types.ModuleType:
        """The real module, imported now if it was not yet (a name no module attribute shadows).

        Raises:
            MissingDependencyError: the package is not installed and a fix was declared.
        """
        module = object.__getattribute__(self, "_lazy_module")
        if module is None:
            name, fix = object.__getattribute__(self, "_lazy_name"), object.__getattribute__(self, "_lazy_fix")
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                if fix is None:
                    raise
                raise MissingDependencyError(f"this needs '{name}', which is not installed", fix) from exc
            object.__setattr__(self, "_lazy_module", module)
        return module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._lazy_load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._lazy_load(), attr, value)

    def __dir__(self) -> list[str]:
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        state = "imported" if object.__getattribute__(self, "_lazy_module") is not None else "not imported yet"
        return f"<lazy module '{object.__getattribute__(self, '_lazy_name')}' ({state})>"


def lazy_import(name: str, fix: str | None = None) -> LazyModule:
    """A proxy for module ``name`` that imports it on first attribute access (nothing is imported now).

    Args:
        name: the dotted module name.
        fix: the install hint of a :class:`MissingDependencyError` raised if the import fails.
    """
    return LazyModule(name, fix)
