"""Sparsekit checkpoints: the model's source, inputs, ModelOpt state and weights in one file.

A checkpoint restores into a fresh model built from its recorded source, so the sparsity masks
(and, later, quantizers) come back as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparsekit._io import atomic_path
from sparsekit.errors import ModelSourceError

FORMAT = "sparsekit.checkpoint"
SCHEMA = 1


def save_checkpoint(loaded, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``loaded`` (a :class:`~sparsekit.models.source.LoadedModel`) to ``path`` atomically.

    Args:
        loaded: the model, its inputs and source.
        path: target ``.pt`` file (the caller checks overwrite rules).
        meta: extra metadata (e.g. the sparsify report), JSON-serialisable.
    """
    import modelopt.torch.opt as mto
    import torch

    payload = {
        "format": FORMAT,
        "schema": SCHEMA,
        "source": loaded.source,
        "inputs": loaded.inputs.to_dict(),
        "meta": meta or {},
        "modelopt_state": mto.modelopt_state(loaded.model),
        "state_dict": loaded.model.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint file's payload (without building the model)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelSourceError(f"checkpoint '{p}' does not exist", "check the path, or run 'sparsekit sparsify' to create it")
    try:
        # Checkpoints hold ModelOpt's state (plain Python objects), so full unpickling is needed:
        # load only checkpoints you created or trust.
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelSourceError(f"'{p}' is not a readable checkpoint ({type(exc).__name__})", "re-create it with 'sparsekit sparsify'") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelSourceError(f"'{p}' is not a sparsekit checkpoint", "pass a file written by 'sparsekit sparsify', or a model name")
    if payload.get("schema") != SCHEMA:
        raise ModelSourceError(f"'{p}' has checkpoint schema {payload.get('schema')}, this sparsekit reads {SCHEMA}", "re-create the checkpoint with this version")
    return payload


def load_checkpoint(path: str | os.PathLike):
    """Rebuild the model a checkpoint describes and restore its sparsity state and weights.

    Returns:
        A :class:`~sparsekit.models.source.LoadedModel` whose ``checkpoint`` holds the metadata.
    """
    import modelopt.torch.opt as mto

    from sparsekit.models.source import load_model
    from sparsekit.models.spec import InputSpec

    payload = read_checkpoint(path)
    source = payload["source"]
    base = load_model(source["spec"], source.get("args", {}), None)
    model = base.model
    if payload["modelopt_state"].get("modelopt_state_dict"):
        model = mto.restore_from_modelopt_state(model, payload["modelopt_state"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelSourceError(f"checkpoint '{path}' does not fit the model '{source['spec']}': {str(exc).splitlines()[0]}", "the model source changed since the checkpoint was written; re-run sparsify") from exc
    base.model = model.eval()
    base.inputs = InputSpec.from_dict(payload["inputs"])
    base.checkpoint = {"path": str(path), **payload.get("meta", {})}
    return base
