"""SIGTERM and SIGHUP stop a command the way Ctrl-C does: by an exception that unwinds it.

Their default action ends the process on the spot, leaving the hidden temporaries of atomic writes
behind (tens of MB for an ONNX). Raised as :class:`Terminated` instead, they run every ``finally``
on the way out, so temporaries are removed and no target is touched.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """The process was asked to stop by a signal (a ``BaseException``, like ``KeyboardInterrupt``,
    so that ``except Exception`` blocks in the library cannot swallow it).

    Attributes:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by a signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGHUP raises :class:`Terminated` in the main thread.

    Later ones are ignored, so that the clean-up the first one started is not cut short. A signal
    the process was started with ignored (``nohup`` ignores SIGHUP) stays ignored. The previous
    handlers are restored on exit. Outside the main thread (where Python cannot install handlers)
    it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum, frame):
        nonlocal raised
        if raised:
            return
        raised = True
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
