"""The input spec a sparsekit export records in its ONNX (``sparsekit.inputs`` metadata), read as
data: every entry checked, one line for a damaged one."""

from __future__ import annotations

import json

from sparsekit.errors import InputShapeError, OnnxModelError
from sparsekit.input_spec import InputSpec

INPUTS_KEY = "sparsekit.inputs"
"""Metadata key holding :meth:`InputSpec.to_dict` as JSON."""


def recorded_inputs(model) -> InputSpec | None:
    """The input spec recorded in ``model``'s metadata (an ``onnx.ModelProto``), or None.

    Raises:
        OnnxModelError: the entry is not JSON or not a valid input spec (too deep, too large,
            malformed): the file may hold anything.
    """
    meta = {p.key: p.value for p in model.metadata_props}
    if INPUTS_KEY not in meta:
        return None
    try:
        return InputSpec.from_dict(json.loads(meta[INPUTS_KEY]))
    except (ValueError, RecursionError, InputShapeError) as exc:
        reason = exc.problem if isinstance(exc, InputShapeError) else "not JSON"
        raise OnnxModelError(f"the ONNX file has a damaged '{INPUTS_KEY}' metadata entry ({reason})", "export the model again, or remove that metadata entry") from exc
