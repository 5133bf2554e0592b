"""One entry for every pruning granularity, shared by ``sparsekit prune`` and a recipe's ``prune`` stage.

:func:`prune_` dispatches to channel pruning (one step, or the prune -> fine-tune loop when a
:class:`~sparsekit.prune.loop.LoopConfig` and a task are given), unstructured magnitude pruning or
low-rank factorisation, and returns the summary a checkpoint records under ``"prune"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

GRANULARITIES = ("channel", "unstructured", "low-rank")


def prune_(
    loaded,
    granularity: str = "channel",
    *,
    ratio: float = 0.25,
    importance: str = "l1",
    round_to: int = 16,
    layer_ratios: Mapping[str, float] | None = None,
    head_ratio: float | None = None,
    global_ranking: bool = False,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    task=None,
    loop=None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    amount: float | None = 0.5,
    threshold: float | None = None,
    scope: str = "layer",
    rank_fraction: float = 0.5,
    batch_size: int = 32,
    say: Callable[[str], None] = lambda m: None,
    progress: Callable[[dict], None] = lambda info: None,
) -> tuple[object, dict]:
    """Prune ``loaded`` (a :class:`~sparsekit.models.loaded.LoadedModel`) at one granularity.

    Args:
        granularity: ``channel``, ``unstructured`` or ``low-rank`` (``low_rank`` accepted).
        ratio, importance, round_to, layer_ratios, head_ratio, global_ranking: channel pruning
            (see :func:`~sparsekit.prune.channels.prune_channels_`); ``taylor`` importance takes
            its gradients from ``task`` (``batch_size`` samples per batch).
        include, exclude: fnmatch patterns of layers (``include`` for unstructured and low rank).
        task, loop, work_dir, resume: with a ``loop`` (:class:`~sparsekit.prune.loop.LoopConfig`)
            channel pruning runs the prune -> fine-tune loop on ``task``, each step saved under
            ``work_dir`` (resumed from there with ``resume``); ``loop.channels`` then holds the
            channel settings.
        amount, threshold, scope: unstructured pruning.
        rank_fraction: low rank, as a share of ``min(in, out)``.
        say, progress: messages and training progress of the loop.

    Returns:
        ``(loaded, summary)``: the pruned model (the loop returns its accepted step, a new object)
        and ``{"granularity": ..., <"loop"|"channels"|"unstructured"|"low_rank">: report}``.

    Raises:
        SparsekitError: bad settings, a loop without a task or folder, a model that is already 2:4
            or quantized, or nothing that can be pruned.
    """
    from sparsekit.errors import SparsekitError

    granularity = granularity.replace("_", "-")
    if granularity not in GRANULARITIES:
        raise SparsekitError(f"unknown pruning granularity '{granularity}'", f"use one of {', '.join(GRANULARITIES)}")
    if granularity == "channel" and loop is not None:
        from sparsekit.prune.loop import iterative_prune

        if task is None or work_dir is None:
            raise SparsekitError("the prune -> fine-tune loop needs a task and a folder for its steps", "give --task (recipes: 'task:')")
        loaded, report = iterative_prune(loaded, task, loop, work_dir, resume, say=say, progress=progress)
        return loaded, {"granularity": "channel", "loop": report}
    if granularity == "channel":
        from sparsekit.prune.channels import prune_channels_

        gradients = None
        if importance == "taylor" and task is not None:
            from sparsekit.prune.loop import taylor_gradients

            gradients = taylor_gradients(task, batch_size)
        report = prune_channels_(loaded, ratio, importance, round_to, layer_ratios, exclude, global_ranking, head_ratio, gradients)
        return loaded, {"granularity": "channel", "channels": report.to_dict()}
    if granularity == "unstructured":
        from sparsekit.prune.unstructured import prune_unstructured_

        report = prune_unstructured_(loaded.model, amount, threshold, scope, include, exclude)
        return loaded, {"granularity": "unstructured", "unstructured": report.to_dict()}
    from sparsekit.prune.lowrank import factorize_

    report = factorize_(loaded, rank_fraction, include, exclude, round_to)
    return loaded, {"granularity": "low-rank", "low_rank": report.to_dict()}
