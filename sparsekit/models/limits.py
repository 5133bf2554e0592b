"""Sizes a file declares, checked before anything of that size is allocated.

A Hugging Face ``config.json``, a checkpoint's recorded zoo arguments or its architecture edits are
written by someone else: a ``num_hidden_layers`` of a million or a hidden size of 10^9 must be one
line, not minutes of allocation and an out-of-memory kill. Two checks, in order:

1. every size-like integer in the description is a non-negative integer below a hard ceiling
   (:data:`MAX_SIZE`, :data:`MAX_LAYERS` for counts of repeated blocks), so even building the
   model's skeleton stays cheap;
2. the model is built on PyTorch's ``meta`` device (shapes only, no memory) and its parameters are
   counted against :attr:`sparsekit.models.trust.TrustPolicy.max_params`.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from sparsekit.errors import ResourceLimitError
from sparsekit.models.trust import check_param_count

MAX_SIZE = 1 << 24
"""Largest size-like integer a file may declare (16,777,216: above any real vocabulary, width or context)."""
MAX_LAYERS = 4096
"""Largest count of repeated blocks (layers, depth) a file may declare."""
MAX_LIST = 4096
"""Longest list of sizes (per-stage depths, widths) a file may declare."""

_LAYER_KEY = re.compile(r"(layers?|depths?|n_layer|blocks?)$", re.IGNORECASE)
_SIZE_KEY = re.compile(r"(size|dim|num_|n_|layers?|heads?|vocab|positions|channels|features|length|depths?|width|hidden|intermediate|embd|ctx|blocks?|experts|groups|rank|patch)", re.IGNORECASE)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_declared_sizes(config: Any, origin: str, path: str = "") -> None:
    """Refuse a (nested) configuration whose size-like integers are negative or absurdly large.

    Args:
        config: a JSON-like dict (a Hugging Face config, zoo arguments).
        origin: what declared it, for the message (``config of 'DIR'``).
        path: the key path so far (recursion).

    Raises:
        ResourceLimitError: a size-like value or list is outside the limits.
    """
    if isinstance(config, dict):
        for key, value in config.items():
            check_declared_sizes(value, origin, f"{path}.{key}" if path else str(key))
        return
    if isinstance(config, (list, tuple)):
        if len(config) > MAX_LIST:
            raise ResourceLimitError(f"{origin} declares a list '{path}' of {len(config):,} entries (limit {MAX_LIST:,})", "fix or re-create the file; no real model needs that many")
        for value in config:
            check_declared_sizes(value, origin, path)
        return
    key = path.rsplit(".", 1)[-1]
    if isinstance(config, float) and _SIZE_KEY.search(key) and config > MAX_SIZE:
        raise ResourceLimitError(f"{origin} declares {path} = {config:g}, beyond any real model (limit {MAX_SIZE:,})", "fix or re-create the file")
    if not _is_int(config) or not _SIZE_KEY.search(key):
        return
    limit = MAX_LAYERS if _LAYER_KEY.search(key) else MAX_SIZE
    if config > limit or config < -1:  # -1 is a common "unset" marker
        raise ResourceLimitError(f"{origin} declares {path} = {config:,}, outside [0, {limit:,}]", "fix or re-create the file; if it is really that size, it is beyond what this kit builds")


def count_params_on_meta(build: Callable[[], Any]) -> int:
    """Parameters (elements) of the module ``build()`` returns, built on the ``meta`` device (no memory).

    Raises:
        whatever ``build`` raises (the caller turns it into its own error).
    """
    import torch

    with torch.device("meta"):
        module = build()
    model = module[0] if isinstance(module, tuple) else module
    return sum(p.numel() for p in model.parameters())


def check_model_size(build: Callable[[], Any], what: str) -> None:
    """Build ``build()`` on the meta device and refuse it when it exceeds the parameter limit.

    Raises:
        ResourceLimitError: more parameters than ``--max-params``.
    """
    check_param_count(count_params_on_meta(build), what)


def check_positive_size(value: Any, what: str, upper: int = MAX_SIZE) -> int:
    """``value`` as an int in ``[1, upper]``.

    Raises:
        ResourceLimitError: not an integer, below 1, or above ``upper``.
    """
    if not _is_int(value) or not 1 <= value <= upper:
        raise ResourceLimitError(f"{what} is {value!r}, not an integer in [1, {upper:,}]", "fix or re-create the file")
    return value
