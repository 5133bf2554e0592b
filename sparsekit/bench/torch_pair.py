"""Dense vs 2:4 of one PyTorch model on a CUDA GPU (PyTorch semi-structured kernels), gated by
correctness and explained by evidence.

Flow: :func:`prepare_torch_sparse` builds the pair once (masked dense model, its converted twin,
FLOP share of the converted layers, Amdahl bound, per-layer parity); :func:`measure_batch` then
checks the two models agree on random inputs, records which kernels each ran, and times them in
paired rounds. A pair in which nothing was converted, or whose outputs disagree, is refused
before anything is timed: a dense-vs-dense ratio or a fast wrong answer is never reported.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import nn

from sparsekit.bench.harness import BenchConfig, measure_pair
from sparsekit.errors import NoEligibleLayersError, SparsekitError
from sparsekit.analyze.rules import amdahl_bound
from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.bench.kernels import profile_kernels
from sparsekit.bench.machine import machine_facts
from sparsekit.bench.torch_sparse import convertible, plain_model, to_semi_structured_, cuda_inputs, TorchCudaRunner
from sparsekit.models.outputs import output_tensors
from sparsekit.sparsify.direct import mask_weights_2to4_

# max |sparse - dense| / max |dense| allowed before timing (both sides hold the same masked
# weights, so only rounding and accumulation order differ)
TOLERANCE = {"float16": 2e-2, "bfloat16": 6e-2}


class SparseOutputMismatchError(SparsekitError):
    """The 2:4 kernels' output differs from the dense model's beyond rounding."""


@dataclass
class TorchSparsePair:
    """A masked dense model on CUDA and its semi-structured twin.

    Attributes:
        loaded: the source model (inputs and name).
        dense: masked weights, dense kernels.
        sparse: the same weights as semi-structured 2:4 tensors where convertible.
        dtype: ``float16`` or ``bfloat16``.
        conversion: converted / not converted layers and weight bytes.
        flop_share: FLOP share (0..1) of the converted layers at batch 1.
        bound: Amdahl bound of that share with 2x kernels.
        layer_parity: worst per-layer ``max|sparse - dense| / max|dense|`` and its layer.
        masking: how the weights became 2:4 (``already 2:4`` or the direct-mask report).
    """

    loaded: object
    dense: nn.Module
    sparse: nn.Module
    dtype: str
    conversion: object
    flop_share: float
    bound: float
    layer_parity: dict
    masking: dict = field(default_factory=dict)

    def evidence(self) -> dict:
        return {
            "converted_linear_layers": len(self.conversion.converted), "not_converted": self.conversion.skipped,
            "converted_flop_share": round(self.flop_share, 4), "amdahl_bound": round(self.bound, 4),
            "layer_parity": self.layer_parity, "masking": self.masking,
            "dense_weight_bytes": self.conversion.dense_weight_bytes, "sparse_weight_bytes": self.conversion.sparse_weight_bytes,
        }


def require_sparse_gpu() -> None:
    """Raise unless a CUDA GPU with 2:4 sparse Tensor Cores (Ampere, 8.0, or newer) is present."""
    import torch

    if not torch.cuda.is_available():
        raise SparsekitError("the torch_sparse backend needs a CUDA GPU and none is available", "run on an Ampere+ GPU host, or use --backend onnxruntime on CPU")
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise SparsekitError(f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}) has no 2:4 sparse Tensor Cores", "use an Ampere (8.0) or newer GPU")


def _has_2to4_linear(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) and convertible(m) is None for m in model.modules())


def _layer_parity(dense: nn.Module, sparse: nn.Module, names: Sequence[str], rows: int = 256) -> dict:
    """Worst per-layer relative error of the converted Linear layers on random inputs.

    Each layer gets a contiguous ``[rows, K]`` input and a row-strided one (every other row of a
    wider tensor, as ``x[:, 0]`` gives a pooler), since the kernels read their operand's layout.
    """
    import torch

    dense_mods, sparse_mods = dict(dense.named_modules()), dict(sparse.named_modules())
    worst, where = 0.0, None
    gen = torch.Generator(device="cuda").manual_seed(7)
    with torch.no_grad():
        for name in names:
            d, s = dense_mods[name], sparse_mods[name]
            wide = torch.randn(rows, 2, d.in_features, device="cuda", generator=gen).to(d.weight.dtype)
            for x in (wide[:, 1].contiguous(), wide[:, 0]):
                ref = d(x).float()
                err = (s(x).float() - ref).abs().max().item() / (ref.abs().max().item() or 1.0)
                if worst == worst and (where is None or not err <= worst):  # a NaN, once seen, stays
                    worst, where = err, name
    return {"max_rel_err": worst, "layer": where, "rows": rows, "inputs": "contiguous and row-strided"}


def prepare_torch_sparse(loaded, dtype: str = "float16", mask_if_dense: bool = True) -> TorchSparsePair:
    """Build the dense/sparse pair of ``loaded`` on the GPU.

    Args:
        loaded: a :class:`~sparsekit.models.source.LoadedModel` (CPU or CUDA; ModelOpt masks are baked in).
        dtype: ``float16`` or ``bfloat16``.
        mask_if_dense: a model with no 2:4 Linear layer gets the kit's magnitude masks first
            (recorded in ``masking``), so a dense model is never compared with itself.

    Raises:
        SparsekitError: no suitable GPU.
        NoEligibleLayersError: no Linear layer could be converted to 2:4 kernels.
        SparseOutputMismatchError: a converted layer disagrees with its dense twin.
    """
    import torch

    require_sparse_gpu()
    model = plain_model(loaded.model).to("cuda")
    masking = {"source": "already 2:4 (masks from the model or checkpoint)"}
    if not _has_2to4_linear(model):
        if not mask_if_dense:
            raise NoEligibleLayersError(f"'{loaded.name}' has no 2:4 Linear layer: timing it would compare a dense model with itself", "sparsify it first ('sparsekit sparsify'), or let the benchmark apply magnitude masks")
        masking = mask_weights_2to4_(model).to_dict()  # on the GPU, before the cast (fp32 magnitudes)
    dense = model.to(getattr(torch, dtype)).eval()
    sparse = copy.deepcopy(dense)
    conversion = to_semi_structured_(sparse, dtype)
    if not conversion.converted:
        reasons = sorted(set(conversion.skipped.values())) or ["the model has no Linear layer"]
        raise NoEligibleLayersError(f"no Linear layer of '{loaded.name}' could run 2:4 kernels ({'; '.join(reasons)[:300]})", "PyTorch runs 2:4 only for Linear layers: benchmark convolutional models with --backend tensorrt")
    share = _converted_share(loaded, dense, conversion.converted)
    parity = _layer_parity(dense, sparse, conversion.converted)
    if not parity["max_rel_err"] <= TOLERANCE[dtype]:  # NaN fails too
        raise SparseOutputMismatchError(f"layer '{parity['layer']}' with 2:4 kernels differs from its dense twin by {parity['max_rel_err']:.2e} (relative; limit {TOLERANCE[dtype]:.0e})", "report this with your torch and cuSPARSELt versions; do not use these kernels")
    return TorchSparsePair(loaded, dense, sparse, dtype, conversion, share, amdahl_bound(share), parity, masking)


def _converted_share(pair_loaded, dense: nn.Module, converted: Sequence[str]) -> float:
    """FLOP share (0..1) of the ``converted`` layers, analysed at batch 1 of ``pair_loaded``'s inputs."""
    analysis = analyze_model(type(pair_loaded)(dense, pair_loaded.inputs.with_batch(1), pair_loaded.source))
    shares = {layer.name: layer.flop_share or 0.0 for layer in analysis.layers}
    return sum(shares.get(n, 0.0) for n in converted)


def with_inputs(pair: TorchSparsePair, inputs) -> TorchSparsePair:
    """The same two models fed other input shapes (e.g. another sequence length), without rebuilding.

    The FLOP share and Amdahl bound are recomputed: attention's share grows with the sequence.
    """
    from dataclasses import replace

    loaded = type(pair.loaded)(pair.loaded.model, inputs, pair.loaded.source)
    share = _converted_share(loaded, pair.dense, pair.conversion.converted)
    return replace(pair, loaded=loaded, flop_share=share, bound=amdahl_bound(share))


def _run(model: nn.Module, x: tuple):
    import torch

    with torch.no_grad():
        return [t.float() for t in output_tensors(model(*x))]


def output_agreement(pair: TorchSparsePair, batch: int, seed: int = 99) -> float:
    """``max|sparse - dense| / max|dense|`` over every output on one random batch.

    Raises:
        SparseOutputMismatchError: above :data:`TOLERANCE` for the pair's dtype (numbers in the message).
    """
    x = cuda_inputs(pair.loaded.inputs.random(batch=batch, seed=seed), pair.dtype)
    dense, sparse = _run(pair.dense, x), _run(pair.sparse, x)
    scale = max(d.abs().max().item() for d in dense) or 1.0
    err = max((s - d).abs().max().item() for d, s in zip(dense, sparse)) / scale
    if not err <= TOLERANCE[pair.dtype]:  # also catches NaN
        raise SparseOutputMismatchError(f"at batch {batch} the 2:4 model's output differs from the dense model's by {err:.2e} (relative to max |output| {scale:.3g}; limit {TOLERANCE[pair.dtype]:.0e})", "nothing was timed; check the layer parity in the report and your torch/cuSPARSELt versions")
    return err


def measure_batch(pair: TorchSparsePair, batch: int, config: BenchConfig, graphs: bool = True, kernels: bool = True) -> dict:
    """Correctness gate, kernel profile and paired timing of ``pair`` at one batch size.

    Returns:
        The harness's paired result plus ``max_rel_err_sparse_vs_dense``, ``timing``
        (``cuda-graph`` / ``eager``), ``kernels`` (dense and sparse), ``peak_gpu_bytes`` and ``notes``.
    """
    import torch

    err = output_agreement(pair, batch)
    spec = pair.loaded.inputs.with_batch(batch)
    torch.cuda.reset_peak_memory_stats()
    dense = TorchCudaRunner(pair.dense, spec, pair.dtype, config.buffers, graphs, "dense", config.seed)
    sparse = TorchCudaRunner(pair.sparse, spec, pair.dtype, config.buffers, dense.method == "cuda-graph", "sparse", config.seed)
    if sparse.method != dense.method:  # both sides are always timed the same way
        dense = TorchCudaRunner(pair.dense, spec, pair.dtype, config.buffers, False, "dense", config.seed)
    notes = [n for n in (dense.note, sparse.note) if n]
    row = {}
    if kernels:
        x = cuda_inputs(spec.random(seed=123), pair.dtype)
        try:
            row["kernels"] = {side: profile_kernels(lambda m=model: _run(m, x)).to_dict() for side, model in (("dense", pair.dense), ("sparse", pair.sparse))}
        except Exception as exc:  # noqa: BLE001 - the profiler is evidence, not a precondition of timing
            notes.append(f"kernel profile unavailable: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            if row["kernels"]["sparse"]["sparse_gemm_calls"] == 0:
                notes.append("no sparse GEMM kernel appeared in the sparse model's profile: the converted layers may have run dense kernels (see kernels.sparse)")
    row.update(measure_pair(dense, sparse, batch, config).to_dict())
    row.update({"max_rel_err_sparse_vs_dense": err, "tolerance": TOLERANCE[pair.dtype], "timing": dense.method, "peak_gpu_bytes": torch.cuda.max_memory_allocated(), "notes": notes})
    return row


def torch_sparse_settings(config: BenchConfig, graphs: bool) -> dict:
    """Measurement settings and library versions recorded with every torch_sparse result."""
    import torch

    cusparselt = torch.backends.cusparselt.is_available()
    return {
        **config.model_dump(), "graphs": graphs, "transfers": False, "timer": "cuda-events", "torch": torch.__version__, "cuda": torch.version.cuda,
        "semi_structured_backend": "cuSPARSELt" if cusparselt else "CUTLASS", "cusparselt_version": torch.backends.cusparselt.version() if cusparselt else None,
    }


def bench_torch_sparse(loaded, batches: Sequence[int], config: BenchConfig, dtype: str = "float16", graphs: bool = True, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Dense (masked weights, dense kernels) vs semi-structured 2:4 kernels of the same model over a batch sweep.

    Raises:
        SparsekitError: no suitable GPU, nothing convertible, or outputs that disagree.
    """
    progress("preparing the dense and 2:4 models on the GPU")
    pair = prepare_torch_sparse(loaded, dtype)
    results = []
    for batch in batches:
        progress(f"batch {batch}: checking outputs, profiling kernels, measuring {config.rounds}" + (f"-{config.max_rounds}" if config.max_rounds > config.rounds else "") + " paired rounds")
        results.append(measure_batch(pair, batch, config, graphs))
    return {
        "benchmark": "pair", "backend": "torch_sparse", "model": loaded.name, "precision": dtype,
        "settings": torch_sparse_settings(config, graphs),
        "machine": machine_facts(gpu=True), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "amdahl": {"sparse_flop_share": round(pair.flop_share, 4), "bound": round(pair.bound, 4), "sparse_layers_in_onnx": None},
        "evidence": pair.evidence(),
        "memory": {"dense_weight_bytes": pair.conversion.dense_weight_bytes, "sparse_weight_bytes": pair.conversion.sparse_weight_bytes},
        "results": results, "notes": ["PyTorch runs 2:4 only for Linear layers; convolutions stay dense on this backend."],
    }
