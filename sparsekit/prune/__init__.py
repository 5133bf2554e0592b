"""Coarser granularities than 2:4, and how they stack with it.

- :mod:`~sparsekit.prune.apply`: :func:`prune_`, the one entry for every granularity (the CLI's
  ``sparsekit prune`` and a recipe's ``prune`` stage).

- :mod:`~sparsekit.prune.channels`: channel (filter), attention-head and FFN-neuron pruning that
  physically removes them (a smaller dense model), dependencies found by Torch-Pruning.
- :mod:`~sparsekit.prune.unstructured`: element-wise magnitude pruning (the comparison mode: a GPU
  runs it no faster).
- :mod:`~sparsekit.prune.lowrank`: truncated-SVD factorisation of Linear layers.
- :mod:`~sparsekit.prune.loop`: prune -> fine-tune (distilled from the unpruned model) -> repeat.
- :mod:`~sparsekit.models.structure`: the record of what changed the architecture, replayed when a
  checkpoint is loaded.
"""
