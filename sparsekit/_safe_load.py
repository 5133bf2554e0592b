"""Read ``torch.save`` files as data: tensors and plain Python values, never code.

A pickle may name any importable function and call it while it is being read (``__reduce__``), so
``torch.load(weights_only=False)`` runs whatever a file asks for. The kit reads every checkpoint and
training state with PyTorch's weights-only unpickler, which refuses every global outside a fixed set
(tensor and storage rebuilders, dtypes, devices, ``torch.Size``, ``OrderedDict``, plain containers
and scalars), plus :data:`SAFE_GLOBALS`. A file that asks for anything else is refused unread.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

from sparsekit.errors import UnsafeCheckpointError

SAFE_GLOBALS: tuple = ()
"""Globals the kit's own files need beyond PyTorch's weights-only set: none.

Found by saving every kind of file the kit writes and listing the globals its pickle names
(``tests/models/test_checkpoint_trust.py`` repeats it): magnitude and SparseGPT checkpoints with and
without channel permutation, INT8 and FP8 quantized ones (max and histogram calibration),
distilled students, and training states (AdamW and SGD; plain, QAT and distillation). ModelOpt
0.47's state (modes, their configs and metadata, quantizer state) is dicts, lists, tuples,
strings, numbers and tensors. Add a type here only together with a test that writes a real file
needing it."""

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _globals_in_pickles(path: Path, max_pickles: int = 4) -> list[str]:
    """Globals named by the first pickles of a plain (non-zip) file, by disassembly only.

    A legacy ``torch.save`` file is a few pickles in a row (magic number, protocol, system
    info, the payload); a ``pickle.dump`` file is one.
    """
    import pickletools

    names: list[str] = []
    with open(path, "rb") as f:
        for _ in range(max_pickles):
            strings: list[str] = []
            try:
                for op, arg, _pos in pickletools.genops(f):
                    if op.name == "GLOBAL":
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(f"{strings[-2]}.{strings[-1]}")
                    elif op.name in _STRING_OPS:
                        strings.append(str(arg))
            except (ValueError, EOFError):  # past the last pickle, or raw tensor bytes
                break
    return names


def _named_globals(path: Path, message: str) -> list[str]:
    """The globals outside the allowed set that a refused pickle asks for (nothing is executed)."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    try:
        names = list(get_unsafe_globals_in_checkpoint(str(path)))  # disassembles the zip's pickle
    except (ValueError, RuntimeError):  # not a zip: a legacy torch.save or a plain pickle file
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        names = [n for n in _globals_in_pickles(path) if n not in allowed and not n.startswith(("torch.", "collections.OrderedDict"))]
    return list(dict.fromkeys(names or _GLOBAL_IN_MESSAGE.findall(message)))


def load_torch_data(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` ``path`` on the CPU, accepting tensors and plain data only.

    Args:
        path: a file written by ``torch.save``.
        what: what the file is, for the error message (``checkpoint``, ``training state``).

    Returns:
        The unpickled payload.

    Raises:
        UnsafeCheckpointError: the pickle asks for a global outside PyTorch's weights-only set and
            :data:`SAFE_GLOBALS` (nothing of it is executed).
        Exception: whatever ``torch.load`` raises for a missing, empty or corrupt file (the caller
            turns it into its own typed error).
    """
    import torch

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # plain pickle.dump files
            with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
                return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise
        names = _named_globals(p, str(exc))
        asked = f"asks for {', '.join(names[:3])}" if names else "asks for objects"
        raise UnsafeCheckpointError(
            f"refused {what} '{p}': its pickle {asked} beyond tensors and plain data, and a {what} is read as data only, never run",
            f"use a {what} written by sparsekit from a source you trust; nothing in this file was executed",
        ) from exc
