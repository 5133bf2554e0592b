"""Choose which layers to sparsify from include/exclude name patterns."""

from __future__ import annotations

import fnmatch
import logging
from typing import Sequence

from torch import nn

log = logging.getLogger(__name__)

SPARSIFIABLE = (nn.Linear, nn.Conv2d)


def candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear/Conv2d of ``model`` by module path (the layer types ModelOpt sparsifies)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SPARSIFIABLE)}


def select_layers(names: Sequence[str], include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Apply fnmatch patterns: a name is selected when it matches an include and no exclude.

    Returns:
        ``(selected, unmatched_patterns)``: the selected names in order, and the include/exclude
        patterns that matched no layer (the caller should warn about them).
    """
    include = list(include) or ["*"]
    selected = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include) and not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    unmatched = [p for p in (*include, *exclude) if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    for p in unmatched:
        log.warning("layer pattern '%s' matches no Linear/Conv2d layer", p)
    return selected, unmatched
