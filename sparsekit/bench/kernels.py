"""Which GPU kernels one call actually ran (torch profiler), grouped so a speedup can be explained.

A 2:4 speedup that does not show up end to end is usually one of: the sparse GEMMs were not
called (layers not converted), they were called but are slower at this shape, or the model's
time is elsewhere (attention, normalisation, elementwise). The kernel names of one inference
answer which: cuSPARSELt and CUTLASS sparse GEMMs carry ``sparse`` in their names; cuBLAS dense
GEMMs are ``*gemm*`` / ``nvjet*`` / ``*xmma*``. The naming is the libraries', not a contract, so
the raw names are kept next to the grouping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

FAMILIES = ("sparse-gemm", "dense-gemm", "attention", "copy", "other")


def kernel_family(name: str) -> str:
    """``sparse-gemm``, ``dense-gemm``, ``attention``, ``copy`` or ``other`` from a kernel's name.

    ``copy`` is layout work (strided-to-contiguous copies, transposes, device memcpy): the cost a
    transposed 2:4 output or a strided input adds, which a ratio alone does not show.
    """
    n = name.lower()
    if "sparse" in n or "cusparselt" in n or "spmma" in n:
        return "sparse-gemm"
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention"
    if any(tag in n for tag in ("gemm", "nvjet", "xmma", "cublas", "cutlass", "matmul")):
        return "dense-gemm"
    if "copy" in n or "transpose" in n or "memcpy" in n:
        return "copy"
    return "other"


def sparse_library(name: str) -> str | None:
    """``CUTLASS`` or ``cuSPARSELt`` for a sparse GEMM kernel name, else None."""
    if kernel_family(name) != "sparse-gemm":
        return None
    return "CUTLASS" if "cutlass" in name.lower() else "cuSPARSELt"


@dataclass
class KernelProfile:
    """GPU kernels of one profiled call.

    Attributes:
        kernels: ``[{"name", "family", "calls", "gpu_us"}]``, longest first (top ``limit``).
        family_us: GPU microseconds per family, over all kernels.
        sparse_libraries: libraries seen among sparse GEMM kernels.
        total_us: GPU microseconds of all kernels.
    """

    kernels: list[dict] = field(default_factory=list)
    family_us: dict[str, float] = field(default_factory=dict)
    sparse_libraries: list[str] = field(default_factory=list)
    total_us: float = 0.0

    @property
    def sparse_gemm_calls(self) -> int:
        return sum(k["calls"] for k in self.kernels if k["family"] == "sparse-gemm")

    def to_dict(self) -> dict:
        return {**asdict(self), "sparse_gemm_calls": self.sparse_gemm_calls}


def summarize_kernels(rows: list[tuple[str, int, float]], limit: int = 15) -> KernelProfile:
    """Group ``(name, calls, gpu_us)`` rows by family; keep the ``limit`` longest by name."""
    profile = KernelProfile(family_us={f: 0.0 for f in FAMILIES})
    merged: dict[str, list] = {}
    for name, calls, us in rows:
        entry = merged.setdefault(name, [0, 0.0])
        entry[0] += calls
        entry[1] += us
    for name, (calls, us) in merged.items():
        family = kernel_family(name)
        profile.family_us[family] += us
        profile.total_us += us
        lib = sparse_library(name)
        if lib and lib not in profile.sparse_libraries:
            profile.sparse_libraries.append(lib)
    top = sorted(merged.items(), key=lambda kv: -kv[1][1])[:limit]
    profile.kernels = [{"name": name[:200], "family": kernel_family(name), "calls": calls, "gpu_us": round(us, 2)} for name, (calls, us) in top]
    profile.family_us = {k: round(v, 2) for k, v in profile.family_us.items()}
    profile.total_us = round(profile.total_us, 2)
    return profile


def profile_kernels(fn: Callable[[], object], limit: int = 15) -> KernelProfile:
    """Run ``fn`` once (after one unprofiled warm-up call) under the torch profiler; return its GPU kernels."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = []
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:  # kernels, memcpy/memset; host-side ops excluded
            rows.append((event.name, 1, float(event.time_range.elapsed_us())))
    return summarize_kernels(rows, limit)
