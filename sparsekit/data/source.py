"""A user data source with its deterministic split: which items train, which evaluate.

Each item goes to evaluation or training by a hash of ``(split_seed, item index)`` compared with
``eval_fraction``: no shuffle of the whole source is needed (it is streamed), the same file and
seed always give the same split, and adding items at the end does not move earlier ones. With a
``split_column`` the file says it instead: each item's value there is its split
(:data:`SPLIT_VALUES`), and ``eval_fraction`` is not used.
Calibration batches (SparseGPT, INT8) are the first training items, never evaluation ones.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Iterator

from sparsekit.data.config import DataConfig
from sparsekit.data.readers import MAX_ITEMS, Reader, open_reader
from sparsekit.errors import TrainingDataError

log = logging.getLogger(__name__)

MAX_CLASSES = 100_000
"""Most distinct label values a source may have."""
SPLIT_VALUES = {"train": "train", "eval": "eval", "validation": "eval", "test": "eval"}
"""The values a split column may hold (compared stripped and in lower case) -> the split they
name: ``train`` items train and calibrate, the others are evaluated."""
MAX_SPLIT_VALUES_SHOWN = 10
"""Distinct split values named in the error for a bad one."""
_MASK64 = (1 << 64) - 1


def split_value(index: int, seed: int) -> float:
    """A uniform number in ``[0, 1)`` for item ``index`` (splitmix64 of seed and index)."""
    z = (index + (seed + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


def is_eval(index: int, seed: int, fraction: float) -> bool:
    """Whether item ``index`` is held out for evaluation."""
    return split_value(index, seed) < fraction


class UserData:
    """A data source (:func:`~sparsekit.data.readers.open_reader`) read once to count its items,
    split them and collect the label values; the items themselves are streamed again when needed.

    Attributes:
        config: the data settings.
        reader: the source's reader.
        label_column: the column holding labels, or None (label-free).
        counts: ``{"items", "train", "eval"}`` (eval: all held-out items, of which at most
            ``config.max_eval`` are evaluated).
        label_values: the distinct raw label values, sorted (empty without labels).
        split_columns: ``{"train": [...], "eval": [...]}``, the columns every item of that split
            has (items of one split may lack columns only the other one needs).
        seen_columns: the columns any item has, in the order first seen.

    Raises:
        TrainingDataError: no items, a label / pair / split column that is not there, a split
            value that is not one of :data:`SPLIT_VALUES`, no evaluation or no training items, or
            more items / label values than the limits.
    """

    def __init__(self, config: DataConfig, reader: Reader | None = None) -> None:
        if not config.source:
            raise TrainingDataError("no data was given", "give --data FILE (or a recipe's data.source)")
        self.config = config
        self.reader = reader or open_reader(config.source)
        self.label_column = self._label_column()
        if config.split_column is not None and config.split_column not in self.reader.columns:
            raise self.missing_column(config.split_column, "--split-column")
        if config.pair_column and config.split_column is None and config.pair_column not in self.reader.columns:
            raise self.missing_column(config.pair_column, "--pair-column")
        self.counts, self.label_values, self.sha256, self.split_columns, self.seen_columns = self._scan()
        if config.pair_column and config.pair_column not in self.seen_columns:
            raise self.missing_column(config.pair_column, "--pair-column")

    @property
    def name(self) -> str:
        return self.reader.path.name

    def missing_column(self, column: str, option: str) -> TrainingDataError:
        """The one line for a column the source does not have, naming those it has."""
        have = ", ".join(self.reader.columns) or "none"
        return TrainingDataError(f"data '{self.reader.path}' has no column '{column}' (its columns: {have})", f"name one of its columns with {option}")

    def require_column(self, column: str, option: str, splits: tuple[str, ...], why: str) -> None:
        """Refuse a source where some item of ``splits`` lacks ``column`` (``why``: what needs it).

        Raises:
            TrainingDataError: naming the split, the column and the columns its items all have.
        """
        for split in splits:
            if self.counts[split] and column not in self.split_columns[split]:
                have = ", ".join(self.split_columns[split]) or "none"
                raise TrainingDataError(f"data '{self.reader.path}': {why}, and not every {split} item has column '{column}' (every {split} item has: {have})", f"give every {split} item a '{column}' value, or name another column with {option}")

    def _split_of(self, index: int, item: dict[str, Any]) -> str | None:
        """``train`` or ``eval`` for item ``index``: its split column's value, or the hash split;
        None for a split column value outside :data:`SPLIT_VALUES`."""
        column = self.config.split_column
        if column is None:
            return "eval" if is_eval(index, self.config.split_seed, self.config.eval_fraction) else "train"
        value = item.get(column)
        return SPLIT_VALUES.get(value.strip().lower()) if isinstance(value, str) else None

    def _bad_split(self, values: dict[str, None], index: int) -> TrainingDataError:
        """The one line for a split column holding ``values`` (distinct, as found), the first
        bad one at item ``index``."""
        shown = ", ".join(list(values)[:MAX_SPLIT_VALUES_SHOWN]) + (", ..." if len(values) > MAX_SPLIT_VALUES_SHOWN else "")
        column = self.config.split_column
        return TrainingDataError(f"data '{self.reader.path}': column '{column}' holds the split values {shown} (item {index} first holds one not accepted); accepted: {', '.join(SPLIT_VALUES)}", f"write train or eval (validation and test also mean eval) in column '{column}' of every item, or leave out --split-column to split by --eval-fraction")

    def _label_column(self) -> str | None:
        want = self.config.label_column
        if want is not None:
            if want not in self.reader.columns:
                raise self.missing_column(want, "--label-column")
            return want
        return "label" if "label" in self.reader.columns else None

    def _scan(self) -> tuple[dict[str, int], list, str, dict[str, list[str]], list[str]]:
        """Count items per split, collect label values and the columns every item of each split
        has, in one streamed pass; also a content hash of the items (recorded in reports, so a
        changed file shows)."""
        n = n_eval = 0
        labels: set = set()
        digest = hashlib.sha256()
        limit = min(self.config.max_items or MAX_ITEMS, MAX_ITEMS)
        order: dict[str, None] = dict.fromkeys(self.reader.columns)
        common: dict[str, set | None] = {"train": None, "eval": None}
        split_values: dict[str, None] = {}
        bad_at: int | None = None
        for item in self.reader.items():
            if n >= limit:
                break
            split = self._split_of(n, item)
            if self.config.split_column is not None and (len(split_values) <= MAX_SPLIT_VALUES_SHOWN or (split is None and bad_at is None)):
                split_values.setdefault(repr(item.get(self.config.split_column))[:40], None)
            if split is None:
                bad_at = n if bad_at is None else bad_at
                split = "train"
            n_eval += split == "eval"
            keys = item.keys()
            if common[split] is None:
                common[split] = set(keys)
            elif not common[split] <= keys:
                common[split] &= keys
            if not keys <= order.keys():
                order.update(dict.fromkeys(keys))
            if self.label_column is not None:
                labels.add(_label_key(item.get(self.label_column), self.reader.path, n))
                if len(labels) > MAX_CLASSES:
                    raise TrainingDataError(f"data '{self.reader.path}' has more than {MAX_CLASSES:,} distinct labels", "check --label-column (it names a column of labels, not of text)")
            digest.update(repr(sorted((k, _digestible(v)) for k, v in item.items())).encode())
            n += 1
        if n == 0:
            raise TrainingDataError(f"data '{self.reader.path}' has no samples", "give a file with at least one sample (blank lines are skipped)")
        if bad_at is not None:
            raise self._bad_split(split_values, bad_at)
        by = f"column '{self.config.split_column}'" if self.config.split_column is not None else f"eval_fraction {self.config.eval_fraction}"
        if n_eval == 0:
            fix = f"mark some items eval in column '{self.config.split_column}'" if self.config.split_column is not None else "give more items or a larger --eval-fraction"
            raise TrainingDataError(f"the split of data '{self.reader.path}' holds no evaluation items ({n} items, split by {by})", fix)
        if n_eval == n:
            fix = f"mark some items train in column '{self.config.split_column}'" if self.config.split_column is not None else "give more items or a smaller --eval-fraction"
            raise TrainingDataError(f"the split of data '{self.reader.path}' holds no training items ({n} items, split by {by})", fix)
        values = sorted(labels, key=lambda v: (isinstance(v, str), v))
        columns = {split: [c for c in order if c in (have or ())] for split, have in common.items()}
        return {"items": n, "train": n - n_eval, "eval": n_eval}, values, digest.hexdigest(), columns, list(order)

    def items(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, item)`` of the ``train`` or ``eval`` split (eval: at most ``max_eval``), or of
        ``all`` items, in file order."""
        limit = self.counts["items"]
        taken = 0
        for index, item in enumerate(self.reader.items()):
            if index >= limit or (split == "eval" and taken >= self.config.max_eval):
                return
            if split == "all" or self._split_of(index, item) == split:
                taken += 1
                yield index, item

    def report(self) -> dict:
        """What was read and how it was split (recorded in the finetune / run reports);
        ``eval_fraction`` is None where a split column decided the split."""
        column = self.config.split_column
        if column is None:
            rule = "item i is held out when splitmix64(split_seed, i) < eval_fraction; calibration uses the first training items"
        else:
            rule = f"each item's split is its value in column '{column}' (train: training and calibration; eval, validation, test: evaluation); calibration uses the first training items"
        return {
            "source": str(self.reader.path), "kind": self.reader.kind, "sha256": self.sha256, "columns": list(self.reader.columns),
            "label_column": self.label_column, "classes": len(self.label_values) or None, **self.counts,
            "evaluated": min(self.counts["eval"], self.config.max_eval), "split_column": column, "eval_fraction": self.config.eval_fraction if column is None else None,
            "split_seed": self.config.split_seed, "split_columns": self.split_columns, "split_rule": rule,
        }


def _label_key(value: Any, path, index: int):
    """A label value as a hashable key: ints (also from '3' or 3.0) or stripped strings."""
    if isinstance(value, bool) or value is None:
        raise TrainingDataError(f"data '{path}': item {index} has no label ({value!r})", "give every item a label, or omit --label-column")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def _digestible(value: Any) -> Any:
    if hasattr(value, "tobytes"):
        return hashlib.sha256(value.tobytes()).hexdigest()
    return value
