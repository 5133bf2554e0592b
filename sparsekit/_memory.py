"""Give freed memory back to the operating system between large stages (Linux glibc)."""

from __future__ import annotations

import ctypes
import gc
import importlib
import sys
import threading
from types import ModuleType
from typing import Callable

RELEASE_MIN_BYTES = 256 * 2**20
"""Weight bytes below which :func:`releaser_for` skips collections: a full ``gc.collect`` costs about
0.5 s once transformers and ModelOpt are imported (measured on the 2-core machine), more than
returning a few MB to the system is worth."""


def release_memory() -> None:
    """Collect garbage and ask glibc to return free heap pages (a no-op elsewhere).

    Large exports allocate and free gigabytes of protobuf and tensor buffers; without this, glibc
    keeps them mapped and the next stage's peak RSS stacks on top of the previous one.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def releaser_for(weight_bytes: int) -> Callable[[], None]:
    """:func:`release_memory` for work on a model of ``weight_bytes``, or a no-op for small models."""
    return release_memory if weight_bytes >= RELEASE_MIN_BYTES else (lambda: None)


def import_cleanly(name: str) -> ModuleType:
    """Import module ``name`` on a new thread's stack (once) and return it.

    PuLP, which ``modelopt.torch`` imports, keeps the exceptions of its failed optional imports,
    and an exception's traceback keeps every frame of the stack that imported it, with the local
    variables of the kit's functions up that stack. Imported for the first time inside a function
    that holds a checkpoint's state dict or copies of a model's weights, those stay in memory for
    the life of the process (measured: about the fp32 weight bytes, 1.1 GiB after sparsifying a
    335 M-parameter BERT). A new thread's stack holds none of the caller's frames.

    Raises:
        Whatever the import raises (ImportError for a missing package).
    """
    if name in sys.modules:
        return sys.modules[name]
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["module"] = importlib.import_module(name)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"import {name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["module"]
