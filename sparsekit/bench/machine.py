"""Machine facts recorded next to every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from sparsekit.backends.gpu import list_gpus


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(gpu: bool = False) -> dict:
    """CPU, cores, memory, OS and library versions of this machine; with ``gpu``, NVML facts
    (name, compute capability, driver, clocks) of every GPU."""
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _pkg(p) for p in ("sparsekit", "torch", "nvidia-modelopt", "onnx", "onnxruntime", "polygraphy", "tensorrt")},
        **({"gpus": _gpus()} if gpu else {}),
    }


LIBRARY_NAMES = {"torch": "torch", "nvidia-modelopt": "ModelOpt", "onnx": "onnx", "onnxruntime": "ONNX Runtime"}
"""Package -> the name a results page gives it."""


def machine_line(facts: dict, libraries: tuple[str, ...] = ("torch",)) -> str:
    """A results page's machine sentence from :func:`machine_facts`: ``Machine: CPU, N cores, M GiB;``
    then ``library version`` for each of ``libraries`` (package names), ending with a full stop."""
    versions = facts.get("versions", {})
    named = ", ".join(f"{LIBRARY_NAMES.get(p, p)} {versions.get(p)}" for p in libraries)
    return f"Machine: {facts.get('cpu')}, {facts.get('cores')} cores, {facts.get('memory_gib')} GiB; {named}."


def _gpus() -> list[dict]:
    return [g.to_dict() for g in list_gpus()]
