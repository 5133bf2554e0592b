"""Export a (sparse) model to a typed ONNX variant and prove it: 2:4 survives, ORT matches PyTorch."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sparsekit._io import atomic_path, ensure_writable_target, write_json_atomic
from sparsekit._memory import release_memory
from sparsekit.errors import ExportError
from sparsekit.export.parity import ParityReport, compare_onnx_to_torch
from sparsekit.export.precisions import get_precision
from sparsekit.export.torch_to_onnx import DEFAULT_OPSET
from sparsekit.sparsify.check import SPARSIFIED, CheckReport, check_model, check_onnx

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """One verified ONNX file.

    Attributes:
        precision: the variant.
        path: where it was written.
        size_bytes: file size.
        seconds: wall time of export + verification.
        sparsified: PyTorch layers that were 2:4 before export.
        check: 2:4 check of the ONNX (every sparsified layer required).
        parity: ONNX Runtime vs PyTorch.
    """

    precision: str
    path: Path
    size_bytes: int
    seconds: float
    sparsified: list[str]
    check: CheckReport
    parity: ParityReport

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "sparsified": self.sparsified,
            "check": self.check.to_dict(),
            "parity": self.parity.to_dict(),
        }


def report_path(onnx_path: str | os.PathLike) -> Path:
    """``model.fp16.onnx`` -> ``model.fp16.report.json``."""
    p = Path(onnx_path)
    return p.with_name(p.stem + ".report.json")


def _verify(tmp: Path, sparsified: Sequence[str]) -> CheckReport:
    check = check_onnx(tmp, require=[SPARSIFIED], sparsified_modules=sparsified)
    found = {layer.name for layer in check.layers}
    missing = [name for name in sparsified if name not in found]
    if missing:
        raise ExportError(f"{len(missing)} sparsified layer(s) not found in the ONNX graph (e.g. '{missing[0]}')", "export with the TorchScript exporter (the default) so node names keep module scopes")
    if not check.passed:
        bad = check.failures[0]
        raise ExportError(f"{len(check.failures)} layer(s) lost 2:4 in the ONNX (e.g. '{bad.name}': {bad.conforming}/{bad.groups} groups)", "do not call mts.export before quantizing; re-run sparsify -> export")
    return check


def _stamp(path: Path, props: dict[str, str]) -> None:
    """Record the input spec and precision in the ONNX's metadata (read back by build and bench)."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def input_spec_of(onnx_path: str | os.PathLike):
    """The input spec an ONNX file was exported with (metadata), else one read from its graph.

    Dynamic dimensions other than the batch default to 1; integer inputs draw ids in [0, 2).
    """
    import onnx

    from sparsekit.analyze.onnx_weights import load_onnx
    from sparsekit.models.spec import InputSpec, InputTensor

    model = load_onnx(onnx_path, load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "sparsekit.inputs" in meta:
        return InputSpec.from_dict(json.loads(meta["sparsekit.inputs"]))
    inits = {t.name for t in model.graph.initializer}
    tensors = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        tensors.append(InputTensor(i.name, dims, dtype if dtype in ("float32", "float16", "int64", "int32") else "float32"))
    return InputSpec(tuple(tensors))


def export_(loaded, precision: str, out: str | os.PathLike, calib: list[tuple] | None = None, force: bool = False, opset: int = DEFAULT_OPSET, require_sparse: Sequence[str] | None = None) -> ExportResult:
    """Write one verified ONNX variant of ``loaded`` to ``out`` (plus ``<stem>.report.json``).

    The file is written to a temporary name, checked (every layer that is 2:4 in PyTorch must be
    2:4 on TensorRT's axis in the ONNX) and compared with PyTorch in ONNX Runtime; only then is it
    renamed onto ``out``. A failed verification leaves nothing behind.

    Args:
        loaded: :class:`~sparsekit.models.source.LoadedModel` (dense, sparse, or quantized).
        precision: ``fp32``, ``fp16`` or ``int8``.
        out: target ``.onnx`` path.
        calib: calibration batches for ``int8`` (the model's random inputs when None).
        force: replace an existing file.
        opset: ONNX opset (raised where a variant needs more).
        require_sparse: module names that must be 2:4 in the ONNX; default: every layer that holds
            a ModelOpt 2:4 mask in ``loaded.model``.

    Raises:
        ExportError: export failed, 2:4 was lost, or ONNX Runtime disagrees with PyTorch.
        OutputExistsError / OutputPathError: ``out`` exists (without ``force``) or is unwritable.
    """
    start = time.perf_counter()
    spec = get_precision(precision)
    target = ensure_writable_target(out, force)
    ensure_writable_target(report_path(target), force)
    if spec.needs_calibration and not calib:
        from sparsekit.models.calib import load_calibration

        calib = load_calibration(None, loaded.inputs)
    sparsified = list(require_sparse) if require_sparse is not None else [layer.name for layer in check_model(loaded.model).layers if layer.sparsified]
    with atomic_path(target) as tmp:
        reference, label = spec.write(loaded.model, loaded.inputs, calib, tmp, opset)
        release_memory()
        _stamp(tmp, {"sparsekit.inputs": json.dumps(loaded.inputs.to_dict()), "sparsekit.precision": precision, "sparsekit.sparse_layers": json.dumps(sparsified)})
        release_memory()
        check = _verify(tmp, sparsified)
        release_memory()
        parity = compare_onnx_to_torch(tmp, reference, loaded.inputs, spec.tolerance, label)
        del reference
        release_memory()
        if not parity.passed:
            raise ExportError(f"ONNX Runtime disagrees with PyTorch for {precision}: {parity.reason()}", "run with --debug and inspect the ONNX; report the model if it is a zoo model")
        size = tmp.stat().st_size
    result = ExportResult(precision, target, size, time.perf_counter() - start, sparsified, check, parity)
    write_json_atomic(report_path(target), result.to_dict())
    log.info("exported %s (%s): %d sparse layers verified, rel err %.1e", target, precision, len(sparsified), parity.max_rel)
    return result
