"""TensorRT's log: an ``ILogger`` that keeps every message (VERBOSE included) for the build log, and its error lines made readable."""

from __future__ import annotations

import logging
import re
from typing import Callable

log = logging.getLogger(__name__)

_SOURCE_TAG = re.compile(r"\[[^\]\s]*\.(?:cpp|cu|h|hpp):\d+[^\]]*\]\s*")
_WHERE = re.compile(r"\s*\bIn \w+ at \S+:\d+\s*")
_WRAPPED = re.compile(r"Error Code \d+: [^(]*\((.*)\)\s*$", re.S)


def clean_trt_error(message: str) -> str:
    """TensorRT's error text without its source locations, on one line.

    ``IBuilder::buildSerializedNetwork: Error Code 1: Myelin ([pass.cpp:1500: run_passes] Cannot
    compile for target(s) sm80, ... In compileGraph at /_src/...cpp:2012)`` becomes ``Cannot compile
    for target(s) sm80, ...``.
    """
    m = _WRAPPED.search(message)
    text = m.group(1) if m else message
    text = _WHERE.sub(" ", _SOURCE_TAG.sub("", text))
    return " ".join(text.split())


def make_trt_logger(trt, sink: Callable[[str], None]):
    """An ``ILogger`` of the bindings module ``trt`` (TensorRT or TensorRT-RTX).

    Args:
        trt: the imported bindings module.
        sink: called with ``"[SEVERITY] message"`` for every message TensorRT emits (a message may
            span several lines; only its first line carries the severity).

    Side effects:
        Warnings and errors are also forwarded to this module's logger.
    """
    severity = trt.ILogger.Severity
    forwarded = {severity.WARNING: logging.WARNING, severity.ERROR: logging.ERROR, severity.INTERNAL_ERROR: logging.ERROR}

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev, msg):  # TensorRT's callback: it must never raise
            try:
                sink(f"[{sev.name}] {msg}")
                if sev in forwarded:
                    log.log(forwarded[sev], "%s", msg)
            except Exception:  # pragma: no cover - an exception must not cross into TensorRT
                pass

    return _Logger()


def error_lines(lines: list[str]) -> list[str]:
    """The messages TensorRT logged as ERROR or INTERNAL_ERROR, without their severity prefix."""
    out = []
    for line in lines:
        for prefix in ("[ERROR] ", "[INTERNAL_ERROR] "):
            if line.startswith(prefix):
                out.append(line[len(prefix):])
    return out
