"""One entry for every pruning granularity (one step, no training): channel pruning, unstructured
magnitude pruning or low-rank factorisation. The prune -> fine-tune loop, which trains between
steps, is a recovery stage above this one (:func:`sparsekit.recover.prune_loop.prune_stage_`).
"""

from __future__ import annotations

from sparsekit.prune.config import GRANULARITIES, PruneConfig
from sparsekit.errors import SparsekitError
from sparsekit.prune.channels import prune_channels_, taylor_gradients
from sparsekit.prune.lowrank import factorize_
from sparsekit.prune.unstructured import prune_unstructured_


def prune_(loaded, config: PruneConfig | None = None, task=None, **settings) -> tuple[object, dict]:
    """Prune ``loaded`` (a :class:`~sparsekit.models.loaded.LoadedModel`) in place, one step.

    Args:
        loaded: the dense model.
        config: the settings (:class:`~sparsekit.prune.config.PruneConfig`); keyword ``settings``
            build one when it is None (``prune_(loaded, granularity="low-rank", rank_fraction=0.25)``).
        task: gives the gradients of ``taylor`` importance (``config.batch_size`` samples a batch).

    Returns:
        ``(loaded, summary)``: the pruned model and ``{"granularity": ..., <"channels"|"unstructured"|"low_rank">: report}``.

    Raises:
        SparsekitError: bad settings, a model that is already 2:4 or quantized, or nothing that can be pruned.
    """
    if config is None:
        from pydantic import ValidationError

        try:
            config = PruneConfig(**settings)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SparsekitError(f"invalid pruning setting {'.'.join(map(str, err['loc']))}: {err['msg']}", f"granularity is one of {', '.join(GRANULARITIES)}; see 'sparsekit prune --help'") from exc
    c = config
    if c.granularity == "channel":
        gradients = taylor_gradients(task, c.batch_size) if c.importance == "taylor" and task is not None else None
        report = prune_channels_(loaded, c.ratio, c.importance, c.round_to, c.layer_ratios, c.exclude, c.global_ranking, c.head_ratio, gradients)
        return loaded, {"granularity": "channel", "channels": report.to_dict()}
    if c.granularity == "unstructured":
        report = prune_unstructured_(loaded.model, c.amount, c.threshold, c.scope, c.include, c.exclude)
        return loaded, {"granularity": "unstructured", "unstructured": report.to_dict()}

    report = factorize_(loaded, c.rank_fraction, c.include, c.exclude, c.round_to)
    return loaded, {"granularity": "low-rank", "low_rank": report.to_dict()}
