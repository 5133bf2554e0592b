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


def _gpus() -> list[dict]:
    return [g.to_dict() for g in list_gpus()]
