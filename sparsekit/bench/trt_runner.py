"""TensorRT / TensorRT-RTX timed runner: device buffers from torch, ``execute_async_v3`` on a torch
stream, CUDA events around the work, optional CUDA-graph capture of the whole inference, transfers
excluded by default (included on request). torch is the only CUDA layer (one context; see
:mod:`sparsekit.backends.trt_runtime`)."""

from __future__ import annotations

from pathlib import Path

from sparsekit.input_spec import InputSpec
from sparsekit.backends.trt_runtime import load_engine, torch_dtype
from sparsekit.bench.cuda_timing import CudaEventTimer, capture_graph


class TrtTimedRunner:
    """One TensorRT engine and execution context.

    Args:
        engine_path: serialized plan.
        inputs: input spec (batch set; must fit the engine's optimization profile).
        buffers: distinct random input sets (host copies, pinned, when transfers are timed).
        graphs: capture ``execute_async_v3`` into a CUDA graph.
        transfers: include host-to-device input and device-to-host output copies in the timing.
        backend: ``tensorrt`` or ``tensorrt-rtx`` (whose kernels are compiled for this GPU here).
    """

    def __init__(self, engine_path: Path, inputs: InputSpec, buffers: int = 8, graphs: bool = True, transfers: bool = False, label: str = "tensorrt", seed: int = 0, backend: str = "tensorrt") -> None:
        import torch

        self.loaded = load_engine(engine_path, backend)
        trt = self.loaded.trt
        self.label = label
        self.engine = self.loaded.engine
        self.context = self.engine.create_execution_context()
        self._stream = torch.cuda.current_stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        in_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        host_sets = [dict(zip(inputs.names, inputs.random(seed=seed + i))) for i in range(buffers)]
        self._static_in = {}
        for name in in_names:
            t = host_sets[0][name]
            want = torch_dtype(self.engine.get_tensor_dtype(name))
            self._static_in[name] = t.to("cuda", want)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, self._static_in[name].data_ptr())
        self._host = [{n: (s[n].to(torch_dtype(self.engine.get_tensor_dtype(n))).pin_memory() if transfers else s[n].to("cuda", torch_dtype(self.engine.get_tensor_dtype(n)))) for n in in_names} for s in host_sets]
        self._outputs = {}
        for name in names:
            if name in self._static_in:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            self._outputs[name] = torch.empty(shape, device="cuda", dtype=torch_dtype(self.engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, self._outputs[name].data_ptr())
        self._host_out = {n: torch.empty(t.shape, dtype=t.dtype).pin_memory() for n, t in self._outputs.items()} if transfers else {}
        self._i = 0
        enqueue = lambda: self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream)  # noqa: E731
        work = enqueue
        if graphs:
            graph = capture_graph(enqueue)
            work = graph.replay
        if transfers:
            def timed():
                for n, t in self._static_in.items():
                    t.copy_(self._host[self._i % len(self._host)][n], non_blocking=True)
                work()
                for n, t in self._outputs.items():
                    self._host_out[n].copy_(t, non_blocking=True)
            self._timer = CudaEventTimer(timed, self._advance)
        else:
            self._timer = CudaEventTimer(work, self._next_into_static)

    def _advance(self) -> None:
        self._i += 1

    def _next_into_static(self) -> None:
        src = self._host[self._i % len(self._host)]
        self._i += 1
        for n, t in self._static_in.items():
            t.copy_(src[n])

    def step(self) -> float:
        return self._timer()

    def device_memory_bytes(self) -> int | None:
        """Activation memory the engine needs (``device_memory_size_v2``)."""
        return getattr(self.engine, "device_memory_size_v2", None)
