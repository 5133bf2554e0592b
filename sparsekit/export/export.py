"""Export a (sparse) model to a typed ONNX variant and prove it: 2:4 survives, ORT matches PyTorch."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from sparsekit._io import disk_full_error, ensure_writable_target, write_json_atomic
from sparsekit._memory import release_memory, releaser_for
from sparsekit.errors import ExportError, OutputPathError
from sparsekit.export.external_data import PROTOBUF_LIMIT, compact, data_file_name, embedded_size, move_weights_, stored_bytes, write_onnx
from sparsekit.export.parity import ParityReport, compare_onnx_to_torch
from sparsekit.export.precisions import get_precision
from sparsekit.export.staging import data_target, staged_onnx
from sparsekit.export.config import DEFAULT_OPSET, ExportConfig
from sparsekit.onnx_io.metadata import INPUTS_KEY, recorded_inputs
from sparsekit.sparsify.check import SPARSIFIED, CheckReport, check_model, check_onnx
from sparsekit.input_spec import InputSpec, InputTensor
from sparsekit.models.calib import load_calibration
from sparsekit.onnx_io.load import load_onnx, onnx_model

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """One verified ONNX file.

    Attributes:
        precision: the variant.
        path: where it was written.
        size_bytes: bytes on disk, the external-data file included.
        seconds: wall time of export + verification.
        sparsified: PyTorch layers that were 2:4 before export.
        check: 2:4 check of the ONNX (every sparsified layer required).
        parity: ONNX Runtime vs PyTorch.
        data_path: the external-data file next to ``path`` (``<name>.data``), or None when the
            ONNX holds its weights.
        weight_bytes: bytes of the stored initializers by element type (``int8``, ``float16``,
            ``float32``...), the external data included.
    """

    precision: str
    path: Path
    size_bytes: int
    seconds: float
    sparsified: list[str]
    check: CheckReport
    parity: ParityReport
    data_path: Path | None = None
    weight_bytes: dict[str, int] | None = None

    def weights_text(self) -> str:
        """``int8 0.05, float16 0.02, float32 0.01`` (MB of stored weights by type), largest first."""
        items = sorted((self.weight_bytes or {}).items(), key=lambda kv: -kv[1])
        return ", ".join(f"{dtype} {size / 1e6:.2f}" for dtype, size in items if size)

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "path": str(self.path),
            "external_data": str(self.data_path) if self.data_path else None,
            "size_bytes": self.size_bytes,
            "weight_bytes": self.weight_bytes or {},
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


def _stamp(model, props: dict[str, str]) -> None:
    """Record the input spec and precision in an ONNX ``ModelProto``'s metadata (read back by
    build, bench and check)."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def _finish_onnx(path: Path, convert, props: dict[str, str], external: bool | None, release: Callable[[], None] = release_memory) -> bool:
    """Turn the exporter's file at ``path`` into the final ONNX, in place.

    The weights go to ``<name>.data`` next to it (the exporter's per-tensor files for models over
    2 GB included), one tensor at a time; the precision's pass (``convert``) and the metadata work
    on the graph; then the file is written self-contained or with its external data.

    Args:
        path: the exporter's ONNX, inside the stage folder.
        convert: the precision's ONNX-side pass, or None.
        props: metadata entries to record.
        external: keep the weights in ``<name>.data``; None: only when they do not fit in one
            protobuf (2 GiB).
        release: gives freed memory back between steps (see :func:`~sparsekit._memory.releaser_for`).

    Returns:
        Whether the ONNX was written with external data.

    Raises:
        ExportError: a self-contained file was asked for and the model does not fit in 2 GiB.
    """
    folder, location = path.parent, data_file_name(path.name)
    model = load_onnx(path, load_external_data=False)
    move_weights_(model, folder, location)
    model = compact(model)
    release()
    if convert is not None:
        model = convert(model, folder, location)
        release()
    _stamp(model, props)
    size = embedded_size(model)
    if external is False and size > PROTOBUF_LIMIT:
        raise ExportError(f"the ONNX needs {size / 2**30:.1f} GiB, more than one protobuf file can hold (2 GiB)", "export with external data (--external-data), the default for models this large")
    keep_external = size > PROTOBUF_LIMIT if external is None else external
    write_onnx(model, path, folder, keep_external)
    return keep_external


def weight_bytes_by_type(onnx_path: str | os.PathLike) -> dict[str, int]:
    """Bytes of an ONNX file's initializers by element type (``{"int8": 1024, "float16": ...}``),
    external data included (only the graph is read)."""
    import onnx

    model = load_onnx(onnx_path, load_external_data=False)
    out: dict[str, int] = {}
    for t in model.graph.initializer:
        name = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name if t.data_type != onnx.TensorProto.STRING else "string"
        out[name] = out.get(name, 0) + stored_bytes(t)
    return out


def input_spec_of(onnx_path):
    """The input spec an ONNX file was exported with (metadata), else one read from its graph.

    ``onnx_path`` is the file or the model already loaded (external data is never read).
    Dynamic dimensions other than the batch default to 1; integer inputs draw ids in [0, 2).
    """
    import onnx

    model = onnx_model(onnx_path)
    recorded = recorded_inputs(model)
    if recorded is not None:
        return recorded
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


def _write_failure(exc: OSError | RuntimeError, target: Path) -> Exception:
    """What to raise for a write of ``target``'s stage that failed: a :class:`DiskFullError` (empty
    output folders this run created are removed), an :class:`OutputPathError` for any other
    ``OSError``, else ``exc`` itself (an exporter or ONNX Runtime failure)."""
    full = disk_full_error(exc, target)
    if full is not None:
        return full
    if isinstance(exc, OSError):
        return OutputPathError(f"cannot write '{target}': {exc.strerror or exc}", "choose a writable output location with free space")
    return exc


def export_(loaded, precision: str, out: str | os.PathLike, calib: list[tuple] | None = None, force: bool = False, opset: int = DEFAULT_OPSET, require_sparse: Sequence[str] | None = None, progress: Callable[[str], None] | None = None, external_data: bool | None = None, no_quant: Sequence[str] = ()) -> ExportResult:
    """Write one verified ONNX variant of ``loaded`` to ``out`` (plus ``<stem>.report.json``).

    The file is written into a hidden stage folder next to ``out``, checked (every layer that is
    2:4 in PyTorch must be 2:4 on TensorRT's axis in the ONNX) and compared with PyTorch in ONNX
    Runtime; only then is it renamed onto ``out`` (with ``<out>.data`` first, when the weights are
    external). A failed verification leaves nothing behind.

    Memory: the model, plus the exporter's own copies while PyTorch writes the ONNX (about twice
    the fp32 weight bytes for a TorchScript export); every later step (weights moved to the data
    file, fp16 conversion, int8 packing, the 2:4 check) holds the graph and one weight at a time,
    and ONNX Runtime holds the file's weights while parity runs.

    Side effects: the pruned entries of each ModelOpt 2:4 layer's stored weight are set to zero in
    place (see :func:`~sparsekit.export.masked_weights.masks_folded_into_weights`); what the
    model computes is unchanged.

    Args:
        loaded: :class:`~sparsekit.models.source.LoadedModel` (dense, sparse, or quantized).
        precision: ``fp32``, ``fp16`` or ``int8``.
        out: target ``.onnx`` path.
        calib: calibration batches for ``int8`` (the model's random inputs when None).
        force: replace an existing file.
        opset: ONNX opset (raised where a variant needs more).
        require_sparse: module names that must be 2:4 in the ONNX; default: every layer that holds
            a ModelOpt 2:4 mask in ``loaded.model``.
        progress: called with a short line as each step starts (writing, 2:4 check, parity).
        external_data: write the weights to ``<out>.data`` next to the ONNX (ONNX's external-data
            layout, one file, relative location); None (default): only when they exceed the
            2 GiB a single ONNX file can hold; False: always one file (an error past 2 GiB).
        no_quant: fnmatch patterns of layers an int8 variant keeps in float (a layer ModelOpt's
            quantizer cannot handle, or one too sensitive to quantize).

    Raises:
        ExportError: export failed, 2:4 was lost, or ONNX Runtime disagrees with PyTorch.
        OutputExistsError / OutputPathError: ``out`` exists (without ``force``) or is unwritable.
        DiskFullError: the disk filled while writing; the stage and the empty output folders this
            process created are removed.
    """
    start = time.perf_counter()
    spec = get_precision(precision)
    release = releaser_for(sum(p.numel() * p.element_size() for p in loaded.model.parameters()))
    target = ensure_writable_target(out, force)
    ensure_writable_target(report_path(target), force)
    ensure_writable_target(data_target(target), force)
    if spec.needs_calibration and not calib:
        calib = load_calibration(None, loaded.inputs)
    sparsified = list(require_sparse) if require_sparse is not None else [layer.name for layer in check_model(loaded.model).layers if layer.sparsified]
    props = {INPUTS_KEY: json.dumps(loaded.inputs.to_dict()), "sparsekit.precision": precision, "sparsekit.sparse_layers": json.dumps(sparsified)}
    try:
        with staged_onnx(target) as tmp:
            say = progress or (lambda msg: None)
            say(f"{precision}: writing ONNX" + (" (calibrating)" if spec.needs_calibration else ""))
            reference, label = spec.write(loaded.model, loaded.inputs, calib, tmp, opset, no_quant)
            release()
            external = _finish_onnx(tmp, spec.convert, props, external_data, release)
            release()
            say(f"{precision}: checking 2:4 on TensorRT's axis")
            check = _verify(tmp, sparsified)
            release()
            say(f"{precision}: comparing ONNX Runtime with PyTorch")
            parity = compare_onnx_to_torch(tmp, reference, loaded.inputs, spec.tolerance, label)
            del reference
            release()
            if not parity.passed:
                raise ExportError(f"ONNX Runtime disagrees with PyTorch for {precision}: {parity.reason()}", "run with --debug and inspect the ONNX; report the model if it is a zoo model")
            size = tmp.stat().st_size + (data_target(tmp).stat().st_size if external else 0)
            weights = weight_bytes_by_type(tmp)
            check.source = str(target)
    except (OSError, RuntimeError) as exc:  # the stage is gone; name the output, not the stage
        failure = _write_failure(exc, target)
        if failure is exc:
            raise
        raise failure from exc
    result = ExportResult(precision, target, size, time.perf_counter() - start, sparsified, check, parity, data_target(target) if external else None, weights)
    write_json_atomic(report_path(target), result.to_dict())
    log.info("exported %s (%s): %d sparse layers verified, rel err %.1e", target, precision, len(sparsified), parity.max_rel)
    return result


def export_all_(loaded, config: ExportConfig, paths: dict[str, Path], force: bool = False, progress: Callable[[str, str], None] = lambda precision, msg: None) -> list[ExportResult]:
    """The export stage: every variant of ``config.precisions`` written to ``paths[precision]``
    (each verified as :func:`export_` does), calibration batches made once for int8.

    Args:
        loaded: the model to export.
        config: the stage's settings.
        paths: target ``.onnx`` per precision.
        force: replace existing files.
        progress: ``progress(precision, line)`` as each step starts.

    Raises:
        ExportError, OutputPathError, CalibrationDataError: as :func:`export_`.
    """
    calib = config.batches_for(loaded) if "int8" in paths else None
    results = []
    for precision, path in paths.items():
        results.append(export_(loaded, precision, path, calib if precision == "int8" else None, force, config.opset,
                               external_data=True if config.external_data else None, progress=lambda msg, p=precision: progress(p, msg), no_quant=config.no_quant))
    return results
