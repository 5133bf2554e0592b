"""Health of the build slots: a slot that keeps failing, or whose thread ended, fails ``/healthz``.

A slot retries transient trouble (the job store unreachable, too many open files) with
exponential back-off; a slot that has failed without a break for longer than the service's
``unhealthy_after_s``, or whose thread is gone while the service runs, is reported.
"""

from __future__ import annotations

import threading
import time


class Backoff:
    """Delays that double from ``first`` to ``cap`` seconds; :meth:`reset` after a success."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class SlotHealth:
    """One slot's thread and its run of failures (times from ``time.monotonic``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self.failing_since: float | None = None
        self.last_error = ""
        self.ended = ""
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            self.last_error = f"{type(exc).__name__}: {exc}"

    def succeeded(self) -> None:
        with self._lock:
            self.failing_since = None

    def died(self, exc: BaseException) -> None:
        with self._lock:
            self.ended = f"{type(exc).__name__}: {exc}"

    def problem(self, unhealthy_after_s: float, stopping: bool) -> str | None:
        """Why this slot is unhealthy, or None."""
        with self._lock:
            if not stopping and (self.ended or (self.thread is not None and not self.thread.is_alive())):
                return f"{self.name} stopped ({self.ended or 'its thread ended'}); restart the service"
            if self.failing_since is not None:
                failing = time.monotonic() - self.failing_since
                if failing >= unhealthy_after_s:
                    return f"{self.name} has failed for {failing:.0f} s ({self.last_error}); it keeps retrying"
        return None
