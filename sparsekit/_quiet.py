"""Keep third-party chatter out of the user's terminal.

ModelOpt's ONNX tools configure their own loggers at import (INFO, to stdout) and its PyTorch
tools print progress; the kit routes that to DEBUG logging instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator

log = logging.getLogger("sparsekit.thirdparty")


@contextlib.contextmanager
def quiet_modelopt() -> Iterator[None]:
    """Silence ModelOpt's loggers (below ERROR), prints and warnings for the duration.

    With the root logger at DEBUG (``--debug``) nothing is silenced. Captured stdout is re-logged
    at DEBUG under ``sparsekit.thirdparty``.
    """
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    # ModelOpt (re)configures its loggers when its modules are imported, possibly inside this
    # block, so levels cannot be set up front: disable WARNING and below for the duration.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        for line in sink.getvalue().splitlines():
            log.debug("%s", line)
