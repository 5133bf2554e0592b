"""Layer lists users hand to ``sparsify``: include/exclude patterns combined with the lists that
``sparsekit select`` (speed) and ``sparsekit sensitivity`` (accuracy) write, or plain text files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sparsekit.errors import NoEligibleLayersError, SparsekitError


def resolve_layer_patterns(include, exclude, include_from: str | None = None, exclude_from: str | None = None) -> tuple[list[str], list[str]]:
    """Combine include/exclude patterns with the lists in ``include_from`` / ``exclude_from``.

    A list file narrows the default "all layers": with ``include_from``, a bare ``*`` in
    ``include`` (the recipe default) is dropped.

    Returns:
        ``(include, exclude)``; ``include`` defaults to ``["*"]``.

    Raises:
        NoEligibleLayersError: ``include_from`` lists no layer (nothing was worth sparsifying).
    """
    include, exclude = list(include), list(exclude)
    if include_from:
        listed = read_layer_list(include_from, "include")
        if not listed:
            raise NoEligibleLayersError(f"'{include_from}' includes no layer (no sparse kernel was faster at the measured batch)", "keep this model dense, or re-run 'sparsekit select' at a larger batch")
        include = [p for p in include if p != "*"] + listed
    if exclude_from:
        exclude += read_layer_list(exclude_from, "exclude")
    return include or ["*"], exclude


def read_layer_list(path: str | os.PathLike, key: str = "include") -> list[str]:
    """Read a layer list: a selection/sensitivity JSON with ``key`` (``include``/``exclude``), or a
    text file with one name or pattern per line (``#`` comments).

    Raises:
        SparsekitError: missing file or no such list in it.
    """
    p = Path(path)
    if not p.is_file():
        raise SparsekitError(f"layer list '{p}' does not exist", "give the JSON written by 'sparsekit select' or a text file with one layer per line")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SparsekitError(f"layer list '{p}' is not valid JSON", "regenerate it with 'sparsekit select'") from exc
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise SparsekitError(f"'{p}' has no '{key}' list", f"give a file with a '{key}' list")
        return [str(x) for x in data[key]]
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
