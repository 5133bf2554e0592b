"""Coarser granularities than 2:4, and how they stack with it.

- :mod:`~sparsekit.prune.config`: :class:`PruneConfig`, every pruning setting (the CLI's options
  and a recipe's ``prune`` section).
- :mod:`~sparsekit.prune.apply`: :func:`prune_`, one step at any granularity.
- :mod:`~sparsekit.prune.channels`: channel (filter), attention-head and FFN-neuron pruning that
  physically removes them (a smaller dense model), dependencies found by Torch-Pruning.
- :mod:`~sparsekit.prune.unstructured`: element-wise magnitude pruning (the comparison mode: a GPU
  runs it no faster).
- :mod:`~sparsekit.prune.lowrank`: truncated-SVD factorisation of Linear layers.

Elsewhere: the prune -> fine-tune loop trains, so it is a recovery stage
(:mod:`sparsekit.recover.prune_loop`); the record of what changed the architecture, replayed when
a checkpoint is loaded, belongs to the models (:mod:`sparsekit.models.structure`).
"""
