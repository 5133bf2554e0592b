"""Give freed memory back to the operating system between large stages (Linux glibc)."""

from __future__ import annotations

import ctypes
import gc
import sys


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
