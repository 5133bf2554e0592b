"""GPU facts through NVML (nvidia-ml-py), read only when asked: nothing here runs at import."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GpuFacts:
    """One GPU.

    Attributes:
        name: e.g. ``NVIDIA H100 80GB HBM3``.
        compute_capability: e.g. ``9.0``.
        driver: driver version string.
        memory_mib: total memory.
        sm_clock_mhz / mem_clock_mhz: current clocks (None if unreadable).
    """

    index: int
    name: str
    compute_capability: str
    driver: str
    memory_mib: int
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None

    @property
    def ampere_or_newer(self) -> bool:
        return float(self.compute_capability) >= 8.0

    def to_dict(self) -> dict:
        return asdict(self)


def list_gpus() -> list[GpuFacts]:
    """Every NVIDIA GPU NVML sees; ``[]`` when there is no driver or no GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no GPU: NVMLError_LibraryNotFound, DriverNotLoaded...
        return []
    try:
        out = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            try:
                sm = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
                mem = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
            except Exception:
                sm = mem = None
            name = pynvml.nvmlDeviceGetName(h)
            out.append(GpuFacts(i, name.decode() if isinstance(name, bytes) else name, f"{major}.{minor}", driver.decode() if isinstance(driver, bytes) else driver, pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20, sm, mem))
        return out
    finally:
        pynvml.nvmlShutdown()
