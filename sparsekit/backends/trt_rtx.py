"""The TensorRT-RTX-only part of a build: target compute capabilities.

Kept apart because these names exist in TensorRT-RTX's bindings only; the names check
(``tests/data/make_trt_api_names.py``) holds this file to the TensorRT-RTX bindings alone.
"""

from __future__ import annotations


def set_target_compute_capabilities(trt, config, targets: tuple[str, ...]) -> None:
    """Make the builder ``config`` compile for ``targets`` (e.g. ``("8.6", "8.9")``).

    Args:
        trt: the imported ``tensorrt_rtx`` module.
        config: its ``IBuilderConfig``; changed in place.
        targets: compute capabilities, each one of ``RTX_COMPUTE_CAPABILITIES``.
    """
    config.num_compute_capabilities = len(targets)
    for index, cc in enumerate(targets):
        config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), index)
