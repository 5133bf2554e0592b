"""What ``sparsekit check FILE`` proves: a 2:4 check that can fail.

A check passes only when at least one layer is required and every required layer is 2:4. What is
required: the layers named by ``--require`` patterns (each must match a layer), plus with
``--require-eligible`` every layer TensorRT could run sparse that ``sparsify`` would sparsify;
by default, the layers the file says were sparsified (a checkpoint: those holding a 2:4 mask; an
ONNX: those its export recorded in its metadata).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sparsekit.errors import CheckFailedError, CheckRequirementError
from sparsekit.sparsify.check import ELIGIBLE, SPARSIFIED, CheckReport, check_model, check_onnx

_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
"""First bytes of ``torch.save`` files: a zip archive, or a (legacy) pickle."""


def _is_onnx(path: str) -> bool:
    """``.onnx`` files, and existing files that are not ``torch.save`` output, are read as ONNX."""
    p = Path(path)
    if p.suffix == ".onnx":
        return True
    if p.suffix in (".pt", ".pth") or not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(4)
    return not head.startswith(_TORCH_MAGIC)


def check_file(path: str | os.PathLike, require: Sequence[str] = (), require_eligible: bool = False, load_options: dict | None = None) -> CheckReport:
    """Check a checkpoint, ONNX file or model name for 2:4 on TensorRT's axis.

    Args:
        path: an ONNX file, a sparsekit checkpoint, or anything ``load_model`` takes.
        require: fnmatch patterns of layer (or weight) names that must be 2:4.
        require_eligible: also require every TensorRT-eligible layer that ``sparsify`` would
            sparsify.
        load_options: keyword arguments of ``load_model`` for a checkpoint or model (input shapes).

    Returns:
        The report (``report.passed`` may still be False: see :func:`raise_if_failed`).

    Raises:
        OnnxModelError / ModelSourceError: the file is missing, empty, corrupt or of another kind.
        UnsafeCheckpointError: a checkpoint's pickle would run code (it is not run).
        CheckRequirementError: a pattern matches no layer, or nothing ends up required.
    """
    path = str(path)
    asked = list(require) + ([ELIGIBLE] if require_eligible else [])
    requirements = asked or [SPARSIFIED]
    onnx = _is_onnx(path)
    if onnx:
        report = check_onnx(path, requirements)
    else:
        from sparsekit.models.source import load_model

        report = check_model(load_model(path, **(load_options or {})).model, requirements, source=path)
    if not report.required and not report.missing:
        raise _nothing_required(report, require_eligible, onnx)
    return report


def _nothing_required(report: CheckReport, eligible: bool, onnx: bool) -> CheckRequirementError:
    layers = len(report.layers)
    if eligible:
        why = f"none of its {layers} weights is both TensorRT-eligible and sparsifiable"
    elif onnx:
        why = "its metadata records no sparsified layer (exported from a dense model, or not by 'sparsekit export')"
    else:
        why = f"none of its {layers} Linear/Conv layers holds a 2:4 mask"
    return CheckRequirementError(
        f"nothing to check in '{report.source}': no layer is required to be 2:4, {why}",
        "name the layers that must be 2:4 with --require PATTERN (e.g. --require '*'), or use --require-eligible; sparsify the model first if it is dense",
    )


def raise_if_failed(report: CheckReport) -> None:
    """Raise the failure of ``report`` as one line with a fix that can help.

    Raises:
        CheckFailedError: a required layer is not 2:4, or a recorded layer is missing (exit 3).
    """
    if report.passed:
        return
    parts = []
    if report.failures:
        names = ", ".join(layer.name for layer in report.failures[:5])
        parts.append(f"{len(report.failures)} required layer(s) are not 2:4 on TensorRT's axis: {names}")
    if report.missing:
        parts.append(f"{len(report.missing)} layer(s) recorded as sparsified are not in the file: {', '.join(report.missing[:5])}")
    raise CheckFailedError("; ".join(parts), _fix_for(report))


def _fix_for(report: CheckReport) -> str:
    if report.missing and not report.failures:
        return "the graph no longer has the layers its export recorded; re-export it with 'sparsekit export'"
    refused = [layer for layer in report.failures if not layer.sparsifiable]
    if refused:
        first = refused[0]
        return f"'{first.name}' cannot be sparsified ({first.sparsify_reason}): leave it out of --require, or change its shape"
    only_sparsegpt = [layer for layer in report.failures if layer.sparsify_reason.endswith("--method sparsegpt")]
    if only_sparsegpt:
        return f"sparsify with --method sparsegpt ('{only_sparsegpt[0].name}' fails magnitude's shape rule), then export again without mts.export before quantizing"
    return "re-run 'sparsekit sparsify' over these layers, then export again (without mts.export before quantizing)"
