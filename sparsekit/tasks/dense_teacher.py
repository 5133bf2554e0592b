"""The teacher ``finetune`` distils from when none is named (``--teacher``), for your own data.

A checkpoint of a model loaded from a Hugging Face folder (``hf:DIR``) records that folder, whose
weights are the trained dense ones: the folder is loaded again as the teacher, after checking
that it still holds the config the checkpoint recorded. Zoo entries and factories record how to
build an *architecture*: their source gives untrained (or your code's) weights, never the dense
model, so they get no default teacher. A teacher is needed only where the data has no labels to
train on; with labels, training goes on without one when there is none to load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from sparsekit.errors import SparsekitError, TrainingDataError
from sparsekit.models.hf import PREFIX, hf_record
from sparsekit.models.source import load_model
from sparsekit.tasks.data_task import DataTask

log = logging.getLogger(__name__)

_UNCOMPARED = ("_name_or_path", "transformers_version")
"""Config keys that name where and with what a config was read, not the model: left out of the comparison."""

_REBUILDS = {"zoo": "an untrained model", "factory": "what your code builds", "torchvision": "the architecture with the weights torchvision gives"}
"""What a recorded source of each kind rebuilds, for the message of a missing teacher."""


@dataclass(frozen=True)
class DefaultTeacher:
    """The teacher chosen when none was named.

    Attributes:
        model: the dense model, or None (no default teacher).
        description: what it is, for the report and the one line on stderr
            (``hf:DIR (the dense model the checkpoint was made from)``), or None.
    """

    model: nn.Module | None = None
    description: str | None = None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _UNCOMPARED}


def dense_model_of(loaded) -> DefaultTeacher:
    """The dense model of a checkpoint whose recorded source is an ``hf:DIR`` folder, loaded again
    from that folder; ``DefaultTeacher()`` for other sources and for models that are not checkpoints.

    Raises:
        TrainingDataError: the folder is gone, no longer loads, or holds another config than the
            one the checkpoint recorded (one line naming ``--teacher`` as the fix).
    """

    source = loaded.source
    spec = source.get("spec")
    if not loaded.checkpoint or source.get("kind") != "hf" or not isinstance(spec, str) or not spec.startswith(PREFIX):
        return DefaultTeacher()
    fix = f"name the dense model with --teacher (e.g. --teacher {spec} once the folder holds it again)"
    try:
        model = load_model(spec, dict(source.get("args") or {})).model
    except SparsekitError as exc:
        raise TrainingDataError(f"the dense model this checkpoint was made from cannot be loaded as the teacher: {exc.problem}", fix) from exc
    recorded = source.get("hf") or {}
    before = _comparable(recorded.get("config") if isinstance(recorded.get("config"), dict) else {})
    now = _comparable(hf_record(model)["config"])
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise TrainingDataError(f"the folder '{spec[len(PREFIX):]}' the checkpoint was made from now holds another model (config differs in: {', '.join(changed[:5]) or 'all of it'})", fix)
    return DefaultTeacher(model, f"{spec} (the dense model the checkpoint was made from)")


def default_teacher(task, loaded) -> DefaultTeacher:
    """The teacher ``finetune`` uses when none is named: for your data
    (:class:`~sparsekit.tasks.data_task.DataTask`) the dense model of :func:`dense_model_of`; for
    other tasks none (they name their own).

    Raises:
        TrainingDataError: the data has no labels and there is no dense model to distil from (a zoo
            or factory checkpoint, or an ``hf:DIR`` folder that is gone or changed).
    """

    if not isinstance(task, DataTask):
        return DefaultTeacher()
    needed = not task.labels
    try:
        found = dense_model_of(loaded)
    except TrainingDataError as exc:
        if needed:
            raise
        log.warning("training on the labels without a teacher: %s", exc.problem)
        return DefaultTeacher()
    kind = loaded.source.get("kind")
    if found.model is None and needed and loaded.checkpoint and kind != "hf":
        raise TrainingDataError(
            f"task '{task.name}' has no labels to train on",
            f"name the dense model with --teacher (a {kind} checkpoint has no default teacher: its recorded source would rebuild {_REBUILDS.get(kind, 'an untrained model')}, not the dense one)",
        )
    return found
