"""Sparsekit checkpoints: the model's source, inputs, ModelOpt state and weights in one file.

A checkpoint restores into a fresh model built from its recorded source, so the sparsity masks
(and, later, quantizers) come back as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparsekit._io import atomic_path
from sparsekit.errors import ModelSourceError, SparsekitError
from sparsekit._memory import import_cleanly
from sparsekit._safe_load import load_torch_data
from sparsekit.input_spec import InputSpec
from sparsekit.models.build import rebuild_from_source
from sparsekit.models.hf import conv1d_to_linear_
from sparsekit.models.loaded import LoadedModel
from sparsekit.models.structure import apply_edits_
from sparsekit.models.ties import untie_like_
from sparsekit._lazy import lazy_import

mto = lazy_import("modelopt.torch.opt")

FORMAT = "sparsekit.checkpoint"
SCHEMA = 1


def save_checkpoint(loaded, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``loaded`` (a :class:`~sparsekit.models.loaded.LoadedModel`) to ``path`` atomically.

    The payload holds the model's source (how to rebuild the architecture: zoo entry, factory,
    ``hf:`` folder, or a Hugging Face class + config), its input spec, ModelOpt's state and the
    weights; everything but the weights and ModelOpt's state is plain JSON-like data.

    Args:
        loaded: the model, its inputs and source.
        path: target ``.pt`` file (the caller checks overwrite rules).
        meta: extra metadata (e.g. the sparsify report), JSON-serialisable.

    Raises:
        ModelSourceError: the model was given in memory and its architecture cannot be rebuilt
            (nothing is written).
    """
    if not loaded.rebuildable:
        raise ModelSourceError(
            f"cannot checkpoint the in-memory model {loaded.name}: a checkpoint rebuilds the architecture from its source, and this model has none",
            "wrap it with the factory or zoo name that builds it (sk.wrap(model, inputs, source='file.py:factory')), or use a Hugging Face model (rebuilt from its config)",
        )
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
    """Read and validate a checkpoint file's payload (without building the model).

    The file is read as data only (:func:`sparsekit._safe_load.load_torch_data`): tensors, numbers,
    strings, lists and dicts. A checkpoint whose pickle asks for anything else (a class, a function
    to call) is refused without executing any of it.

    Raises:
        ModelSourceError: the file is missing, unreadable, not a sparsekit checkpoint, of another
            schema, or lacks a part of the payload.
        UnsafeCheckpointError: the pickle would import or call code.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelSourceError(f"checkpoint '{p}' does not exist", "check the path, or run 'sparsekit sparsify' to create it")
    if p.stat().st_size == 0:
        raise ModelSourceError(f"checkpoint '{p}' is empty", "re-create it with 'sparsekit sparsify'; the write that made it did not finish")
    try:
        payload = load_torch_data(p, "checkpoint")
    except SparsekitError:
        raise
    except Exception as exc:
        raise ModelSourceError(f"'{p}' is not a readable checkpoint ({type(exc).__name__})", "re-create it with 'sparsekit sparsify'") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelSourceError(f"'{p}' is not a sparsekit checkpoint", "pass a file written by 'sparsekit sparsify', or a model name")
    if payload.get("schema") != SCHEMA:
        raise ModelSourceError(f"'{p}' has checkpoint schema {payload.get('schema')}, this sparsekit reads {SCHEMA}", "re-create the checkpoint with this version")
    _check_payload(p, payload)
    return payload


_PARTS = {"source": dict, "inputs": (list, dict), "meta": dict, "modelopt_state": dict, "state_dict": dict}
"""The parts of a checkpoint payload and their types (``meta`` may be absent in old files)."""


def _check_payload(path: Path, payload: dict[str, Any]) -> None:
    """Refuse a payload with a missing or mistyped part (instead of failing later on a key)."""
    import torch

    for key, kind in _PARTS.items():
        if key == "meta" and key not in payload:
            continue
        if not isinstance(payload.get(key), kind):
            raise ModelSourceError(f"checkpoint '{path}' is damaged: its '{key}' part is {'missing' if key not in payload else type(payload[key]).__name__}", "re-create it with 'sparsekit sparsify'")
    if not isinstance(payload["source"].get("spec"), str):
        raise ModelSourceError(f"checkpoint '{path}' is damaged: it does not record the model's source", "re-create it with 'sparsekit sparsify'")
    bad = next((k for k, v in payload["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ModelSourceError(f"checkpoint '{path}' is damaged: weight entry '{bad}' is not a tensor", "re-create it with 'sparsekit sparsify'")


def _restore_modelopt_state(model, state: dict, path):
    """ModelOpt's modes (2:4 masks, quantizers) restored onto ``model``; a state ModelOpt rejects is one line.

    ModelOpt looks the recorded mode names up in its own registry (data, not code).

    Raises:
        ModelSourceError: the state does not describe modes ModelOpt can restore on this model.
    """
    modes = state.get("modelopt_state_dict")
    if not isinstance(modes, list) or len(modes) > 64:
        raise ModelSourceError(f"checkpoint '{path}' is damaged: its ModelOpt state is not a short list of modes", "re-create it with 'sparsekit sparsify'")
    try:
        return mto.restore_from_modelopt_state(model, state)
    except Exception as exc:  # ModelOpt raises assorted types for states it cannot apply
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelSourceError(f"checkpoint '{path}' has a ModelOpt state that cannot be restored on its model ({type(exc).__name__}: {first})", "re-create it with 'sparsekit sparsify' (and the sparsekit/ModelOpt versions that read it)") from exc


def load_checkpoint(path: str | os.PathLike):
    """Rebuild the model a checkpoint describes and restore its sparsity state, weights and inputs.

    The architecture comes from the recorded source (without reading its inputs from it: the
    checkpoint's own input spec is used), ``transformers.Conv1D`` layers are converted as at load
    time, recorded architecture edits (pruned widths, factorised layers:
    :mod:`sparsekit.models.structure`) are redone, and layers whose tied weight was untied before sparsifying are untied again.

    Returns:
        A :class:`~sparsekit.models.loaded.LoadedModel` whose ``checkpoint`` holds the metadata
        (its calling convention is set by :func:`sparsekit.models.source.prepare_`).

    Raises:
        ModelSourceError: the source cannot be rebuilt, or the weights do not fit it.
    """
    payload = read_checkpoint(path)  # first: a bad file is refused before the slow ModelOpt import

    import_cleanly("modelopt.torch")  # not on this stack: the import would keep `payload` alive (see import_cleanly)

    source = payload["source"]
    inputs = InputSpec.from_dict(payload["inputs"])  # checked before the model is built
    model = rebuild_from_source(source, f"checkpoint '{path}'")
    conv1d_to_linear_(model)
    edits = source.get("edits", [])
    if not isinstance(edits, list):
        raise ModelSourceError(f"checkpoint '{path}' is damaged: its architecture edits are not a list", "re-create it with 'sparsekit prune'")
    apply_edits_(model, edits)  # pruned widths, factorised layers
    untie_like_(model, payload["state_dict"])
    if payload["modelopt_state"].get("modelopt_state_dict"):
        model = _restore_modelopt_state(model, payload["modelopt_state"], path)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelSourceError(f"checkpoint '{path}' does not fit the model '{source['spec']}': {str(exc).splitlines()[0]}", "the model source changed since the checkpoint was written; re-run sparsify") from exc
    return LoadedModel(model.eval(), inputs, source, {"path": str(path), **payload.get("meta", {})})
