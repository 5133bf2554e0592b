"""Preprocessed inputs of a data source kept on disk, keyed by content: tokenizing (or image
processing) a source is done once, not every epoch and every command.

An entry holds every item's inputs (the source's items in file order, up to ``max_items``) and is
named by a sha256 over the source's content (the file's hash, or every file's in a folder), the
preprocessing's identity (the tokenizer / image processor / feature extractor files and config of
the ``hf:DIR`` folder, or the file and name of your ``--preprocess`` function), the model's input
names, dtypes and shapes, the text settings, the split settings and the kit's version: anything
that changes the inputs changes the name. Text inputs are kept unpadded (one row of tokens per
item) and padded per batch as the tokenizer pads; other inputs are kept as ``[N, ...]``.

Entries are data: written atomically, read with ``torch.load(weights_only=True)`` (memory-mapped)
and checked against what the source says (item count, input names, dtypes, shapes) before use. A
damaged or mismatched entry is ignored and written again, never an error; a source whose inputs
would take more than :data:`MAX_CACHE_BYTES` is not cached (it is streamed as without a cache).

Location: ``$SPARSEKIT_CACHE_DIR/data``, else ``$XDG_CACHE_HOME/sparsekit/data``, else
``~/.cache/sparsekit/data``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from sparsekit._hashing import file_sha256, kit_version
from sparsekit._io import atomic_path

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the entry layout (part of the key)."""
MAX_CACHE_BYTES = 2 * 1024 ** 3
"""Largest entry (bytes of tensors); a larger source is streamed and not cached."""
CHUNK_ITEMS = 256
"""Items preprocessed at a time while an entry is built."""
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx", ".gguf")
"""Files of an ``hf:DIR`` folder that hold weights, not preprocessing (left out of the key)."""


def cache_dir() -> Path:
    """The folder of the data cache (see the module docstring)."""
    root = os.environ.get("SPARSEKIT_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "data"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sparsekit" / "data"


def source_sha256(path: Path) -> str:
    """sha256 of a data file, or one over a folder's files (relative path and content hash; a link
    by the path it names, never followed: the readers refuse links that leave the folder, and a
    link must not make the kit read a file outside it)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_symlink() or p.is_file()):
        content = "link:" + os.readlink(f) if f.is_symlink() else file_sha256(f)
        digest.update(f"{f.relative_to(path)}\0{content}\n".encode())
    return digest.hexdigest()


def _processor_files(folder: Path | None) -> dict[str, str]:
    """File name -> sha256 of an ``hf:DIR`` folder's files but its weights (tokenizer, processor, config)."""
    if folder is None:
        return {}
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and not f.name.endswith(".index.json"))
    return {f.name: file_sha256(f) for f in files}


def _code_sha256(target: str) -> str | None:
    """sha256 of the file of ``FILE.py`` or of module ``pkg.module`` (found, not imported)."""
    import importlib.util

    if target.endswith(".py"):
        path = Path(target).expanduser()
    else:
        try:
            spec = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            return None
        path = Path(spec.origin) if spec is not None and spec.origin else None
    return file_sha256(path) if path is not None and path.is_file() else None


def _preprocess_identity(pre) -> dict[str, Any]:
    """What decides the inputs besides the items: the route and what it reads."""
    out: dict[str, Any] = {"how": pre.how, "max_length": pre.max_length, "text_column": pre.data.config.text_column, "pair_column": pre.data.config.pair_column, "pair_as_second_text": pre.pair_as_second_text}
    if pre.how == "user":
        target, _, function = pre.data.config.preprocess.rpartition(":")
        out["user"] = {"function": function, "file_sha256": _code_sha256(target)}
    if pre.how in ("tokenizer", "image-processor", "feature-extractor"):
        import transformers

        out["processor_files"] = _processor_files(pre.folder)
        out["transformers"] = transformers.__version__
    return out


def cache_key(pre) -> str:
    """The sha256 naming the entry of ``pre``'s source and preprocessing (see the module docstring)."""
    data = pre.data
    blob = {
        "format": CACHE_FORMAT, "kit": kit_version(), "source": source_sha256(data.reader.path), "kind": data.reader.kind,
        "inputs": [[t.name, t.dtype, list(t.shape)] for t in pre.spec.tensors], "preprocess": _preprocess_identity(pre),
        "split": {"max_items": data.config.max_items, "split_seed": data.config.split_seed, "eval_fraction": data.config.eval_fraction},
    }
    if data.config.split_column is not None:
        blob["split"]["split_column"] = data.config.split_column
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


class InputCache:
    """Every item's inputs of a source (an entry, checked), batched by item index.

    Attributes:
        entry: the stored dict (see :func:`_check`).
        status: ``hit`` (read from disk) or ``written``.
        path: the entry's file.
    """

    def __init__(self, entry: dict, status: str, path: Path) -> None:
        self.entry, self.status, self.path = entry, status, path
        self._starts = {name: _starts(part["lengths"]) for name, part in entry["inputs"].items() if part["lengths"] is not None}

    def batch(self, indices: Sequence[int]) -> tuple[dict[str, torch.Tensor], int]:
        """``({input name: [B, ...] tensor}, texts truncated among them)`` of items ``indices``;
        text inputs padded to the longest item, on the tokenizer's side, with its pad values."""
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        out = {}
        for name, part in self.entry["inputs"].items():
            if part["lengths"] is None:
                out[name] = part["values"][index]
                continue
            rows = [part["values"][s : s + n] for s, n in zip(self._starts[name][index].tolist(), part["lengths"][index].tolist())]
            width = max((len(r) for r in rows), default=0)
            padded = torch.full((len(rows), width), int(self.entry["pad"].get(name, 0)), dtype=part["values"].dtype)
            for i, row in enumerate(rows):
                if self.entry["padding_side"] == "left":
                    padded[i, width - len(row):] = row
                else:
                    padded[i, : len(row)] = row
            out[name] = padded
        full = self.entry["full_lengths"]
        truncated = int((full[index] > self.entry["max_length"]).sum()) if full is not None else 0
        return out, truncated


def _starts(lengths: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(lengths, 0) - lengths


def open_cache(pre) -> InputCache | None:
    """The entry of ``pre``'s source: read and checked, else built (one streamed pass over the
    source) and written atomically; None when the inputs cannot be cached (more than
    :data:`MAX_CACHE_BYTES`, or a ``--preprocess`` whose outputs differ in shape between batches)."""
    key = cache_key(pre)
    path = cache_dir() / f"{key}.pt"
    entry = _read(path, key, pre)
    if entry is not None:
        return InputCache(entry, "hit", path)
    entry = _build(pre, key)
    if entry is None:
        return None
    try:
        with atomic_path(path) as tmp:
            torch.save(entry, tmp)
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is not an error
        log.info("the preprocessed data was not cached in '%s': %s", path.parent, exc)
        return InputCache(entry, "not written", path)
    return InputCache(entry, "written", path)


def _read(path: Path, key: str, pre) -> dict | None:
    """The checked entry at ``path``, or None (missing, damaged or not matching: logged)."""
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_CACHE_BYTES + (1 << 20):
            raise ValueError(f"{path.stat().st_size:,} bytes")
        entry = torch.load(path, weights_only=True, mmap=True)
        _check(entry, key, pre)
        return entry
    except Exception as exc:  # noqa: BLE001 - a bad entry is ignored and written again
        log.info("ignoring the cached data '%s' (%s: %s); it is written again", path.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None


def _check(entry: Any, key: str, pre) -> None:
    """Raise ValueError unless ``entry`` holds the inputs ``pre`` makes for every item of its source."""
    n = pre.data.counts["items"]
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
        raise ValueError("another format or key")
    if entry.get("items") != n or entry.get("how") != pre.how or entry.get("max_length") != pre.max_length:
        raise ValueError(f"{entry.get('items')} items, the source has {n}")
    inputs, specs = entry.get("inputs"), {t.name: t for t in pre.spec.tensors}
    if not isinstance(inputs, dict) or not inputs or not set(inputs) <= set(specs) or (pre.how != "tokenizer" and set(inputs) != set(specs)):
        raise ValueError("other input names")
    for name, part in inputs.items():
        values, lengths = part.get("values"), part.get("lengths")
        if not torch.is_tensor(values) or values.dtype != getattr(torch, specs[name].dtype):
            raise ValueError(f"input '{name}' is not {specs[name].dtype}")
        if lengths is None:
            sample = list(specs[name].shape[1:])
            if values.shape[0] != n or (not specs[name].dynamic and list(values.shape[1:]) != sample):
                raise ValueError(f"input '{name}' has shape {list(values.shape)}")
        elif not torch.is_tensor(lengths) or lengths.dtype != torch.int64 or lengths.shape != (n,) or values.ndim != 1 or bool((lengths < 0).any()) or int(lengths.sum()) != values.shape[0]:
            raise ValueError(f"input '{name}' has inconsistent lengths")
    full = entry.get("full_lengths")
    if pre.how == "tokenizer" and (not torch.is_tensor(full) or full.shape != (n,)):
        raise ValueError("no text lengths")
    if not isinstance(entry.get("pad"), dict) or entry.get("padding_side") not in ("left", "right"):
        raise ValueError("no padding")


def _build(pre, key: str) -> dict | None:
    """Preprocess every item of the source, in chunks; None past :data:`MAX_CACHE_BYTES` or when
    chunks give inputs of other shapes."""
    n = pre.data.counts["items"]
    parts: dict[str, list] = {}
    full: list[int] = []
    size = done = 0
    chunk: list[dict] = []

    def flush() -> bool:
        """Preprocess ``chunk``; False once the entry would pass the size cap."""
        nonlocal size, done
        if pre.how == "tokenizer":
            made, lengths = pre.unpadded(chunk)
            full.extend(lengths)
        else:
            made = dict(zip(pre.names, pre(chunk)))
        for name, value in made.items():
            parts.setdefault(name, []).append(value)
            size += sum(v.numel() * v.element_size() for v in value) if isinstance(value, list) else value.numel() * value.element_size()
        done += len(chunk)
        chunk.clear()
        return size * n / done <= MAX_CACHE_BYTES

    for _, item in pre.data.items("all"):
        chunk.append(item)
        if len(chunk) == CHUNK_ITEMS and not flush():
            break
    if chunk:
        flush()
    if size * n / max(done, 1) > MAX_CACHE_BYTES:
        log.info("data '%s' is not cached: its inputs would take more than %s bytes", pre.data.name, f"{MAX_CACHE_BYTES:,}")
        return None
    inputs = {}
    for name, chunks in parts.items():
        if pre.how == "tokenizer":
            rows = [row for c in chunks for row in c]
            inputs[name] = {"values": torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64), "lengths": torch.tensor([len(r) for r in rows], dtype=torch.int64)}
        else:
            if len({tuple(c.shape[1:]) for c in chunks}) > 1:
                log.info("data '%s' is not cached: input '%s' has other shapes in other batches", pre.data.name, name)
                return None
            inputs[name] = {"values": torch.cat(chunks), "lengths": None}
    return {
        "format": CACHE_FORMAT, "key": key, "items": n, "how": pre.how, "max_length": pre.max_length, "inputs": inputs,
        "full_lengths": torch.tensor(full, dtype=torch.int64) if pre.how == "tokenizer" else None,
        "pad": pre.pad_values() if pre.how == "tokenizer" else {}, "padding_side": getattr(pre.tokenizer, "padding_side", "right") if pre.how == "tokenizer" else "right",
    }
