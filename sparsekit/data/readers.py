"""Readers of the data users have on disk, each streaming items (plain dicts) and never holding the
whole source in memory.

An item is a dict of column name -> value: ``text`` (a text file's line), the columns of a JSONL /
CSV / Parquet row or a ``datasets`` row, ``image`` (the path of an image file) and ``label`` (its
class index) for an image folder, ``audio`` (the path of a WAV file, its header checked) and, in
class subfolders, ``label`` for an audio folder, or one ``[...]`` array per key of a tensor file.
Every reader checks sizes before reading where it can (the file's bytes, a line's bytes, Parquet's
row count, a WAV header's samples) and turns bad data into one :class:`~sparsekit.errors.TrainingDataError` line.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

from sparsekit.errors import MissingDependencyError, TrainingDataError, SparsekitError
from sparsekit._safe_load import load_torch_data
from sparsekit.data.wav import read_wav_header

log = logging.getLogger(__name__)

MAX_ITEMS = 50_000_000
"""Most items a source may have (a row count past it is refused before reading)."""
MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest line (text, JSONL) or CSV field, in bytes."""
MAX_TENSOR_FILE_BYTES = 8 * 1024 ** 3
"""Largest ``.pt`` / ``.npz`` tensor file (read whole, so bounded)."""
MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Largest image file."""
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
"""Most pixels an image may declare in its header (checked before decoding)."""
AUDIO_SUFFIXES = (".wav",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
TENSOR_SUFFIXES = (".pt", ".pth", ".npz")
_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_NEWLINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")


class Reader:
    """A data source: its columns and a stream of items.

    Attributes:
        path: the file or folder.
        kind: ``text``, ``jsonl``, ``csv``, ``parquet``, ``images``, ``audio``, ``datasets`` or ``tensors``.
        columns: the column names every item has.
        classes: for an image folder or an audio folder in class subfolders, the class names
            (sorted subfolder names); else None.
    """

    kind = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = []
        self.classes: list[str] | None = None

    def items(self) -> Iterator[dict[str, Any]]:
        """The items in file order."""
        raise NotImplementedError


def _bad(path: Path, problem: str, fix: str) -> TrainingDataError:
    return TrainingDataError(f"data '{path}': {problem}", fix)


def _raw_lines(path: Path, f) -> Iterator[bytes]:
    """The lines of the binary file ``f``, each read with at most :data:`MAX_LINE_BYTES` + 1 bytes
    in memory (a longer line is refused before the rest of it is read)."""
    number = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise _bad(path, f"line {number} is longer than {MAX_LINE_BYTES:,} bytes", "split the data into shorter lines (one sample a line)")
        yield raw


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines, each checked against :data:`MAX_LINE_BYTES`."""
    with open(path, "rb") as f:
        for number, raw in enumerate(_raw_lines(path, f), start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                yield number, text


class TextReader(Reader):
    """A text file: one sample a line (blank lines skipped); items ``{"text": line}``."""

    kind = "text"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.columns = ["text"]

    def items(self):
        for _, text in _lines(self.path):
            yield {"text": text}


class JsonlReader(Reader):
    """JSON Lines: one JSON object a line; the first object's keys are the columns."""

    kind = "jsonl"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        first = next(self._rows(), None)
        self.columns = list(first[1]) if first else []

    def _rows(self):
        for number, text in _lines(self.path):
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise _bad(self.path, f"line {number} is not JSON ({exc.msg})", "write one JSON object per line") from exc
            except RecursionError as exc:
                raise _bad(self.path, f"line {number} nests its JSON values too deeply to read", "write flat values (lists of numbers, strings)") from exc
            if not isinstance(row, dict):
                raise _bad(self.path, f"line {number} is a JSON {type(row).__name__}, not an object", "write one JSON object per line, e.g. {\"text\": ..., \"label\": ...}")
            yield number, row

    def items(self):
        for _, row in self._rows():
            yield row


class CsvReader(Reader):
    """CSV with a header row; every value is a string (labels and numbers are read later)."""

    kind = "csv"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._open() as f:
            try:
                self.columns = [c.strip() for c in next(csv.reader(self._text_lines(f)), [])]
            except csv.Error as exc:
                raise _bad(self.path, f"the header is not CSV ({exc})", "write a header row of column names") from exc

    def _open(self):
        csv.field_size_limit(MAX_LINE_BYTES)
        return open(self.path, "rb")

    def _text_lines(self, f) -> Iterator[str]:
        """The file's lines decoded (invalid UTF-8 replaced), none longer than :data:`MAX_LINE_BYTES`,
        split at ``\r\n``, ``\n`` and a lone ``\r`` as the csv module expects."""
        for raw in _raw_lines(self.path, f):
            text = raw.decode("utf-8", errors="replace")
            if "\r" not in text:
                yield text
            else:
                yield from (part for part in _NEWLINES.findall(text) if part)

    def items(self):
        with self._open() as f:
            reader = csv.reader(self._text_lines(f))
            next(reader, None)
            try:
                for row in reader:
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(self.columns):
                        raise _bad(self.path, f"row {reader.line_num} has {len(row)} fields, the header {len(self.columns)}", "quote fields that hold commas")
                    yield dict(zip(self.columns, row))
            except csv.Error as exc:
                raise _bad(self.path, f"row {reader.line_num} is not CSV ({exc})", "fix the CSV (quote fields that hold commas or newlines)") from exc


class ParquetReader(Reader):
    """Parquet, read a record batch at a time through pyarrow; the row count is checked from the footer first."""

    kind = "parquet"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingDependencyError("reading Parquet needs 'pyarrow', which is not installed", "pip install 'sparsekit[data]' (or pyarrow), or convert the file to CSV / JSONL") from exc
        try:
            self._file = pq.ParquetFile(str(path))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise _bad(path, f"is not a readable Parquet file ({type(exc).__name__})", "write it again with pyarrow / pandas .to_parquet") from exc
        rows = self._file.metadata.num_rows
        if rows > MAX_ITEMS:
            raise _bad(path, f"declares {rows:,} rows, more than {MAX_ITEMS:,}", "use a smaller file or --max-items")
        self.columns = list(self._file.schema_arrow.names)

    def items(self):
        for batch in self._file.iter_batches(batch_size=1024):
            yield from batch.to_pylist()


class _FolderReader(Reader):
    """A folder read file by file, in class subfolders (``DIR/<class>/<file>``) or flat: a link
    that leads out of the folder is refused, a file that is not a regular one is skipped."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._root = path.resolve()

    def _inside(self, entry: Path) -> bool:
        """Whether ``entry`` (a symbolic link followed) lies inside the folder; a link that leads
        out of it is refused, one that cannot be resolved (a loop, a dangling link) is skipped."""
        if not entry.is_symlink():
            return True
        try:
            target = entry.resolve(strict=True)
        except (OSError, RuntimeError):
            log.debug("data %r: skipping %r, a link that does not resolve", str(self.path), str(entry))
            return False
        if target != self._root and self._root not in target.parents:
            raise _bad(self.path, f"'{entry.relative_to(self.path)}' is a link to '{target}', outside the folder", "copy the file into the folder instead of linking it")
        return True

    def _subfolders(self) -> list[str]:
        """The class names: the sorted names of the subfolders (hidden ones left out)."""
        return sorted(d.name for d in self.path.iterdir() if not d.name.startswith(".") and self._inside(d) and d.is_dir())

    def _files(self, folder: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
        """The regular files of ``folder`` with one of ``suffixes``, sorted by name."""
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in suffixes and self._inside(file) and file.is_file():
                yield file


class ImageFolderReader(_FolderReader):
    """A folder of images in class subfolders (``DIR/<class>/<image>``); labels are the indices of
    the sorted subfolder names; items ``{"image": path, "label": index}``."""

    kind = "images"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.classes = self._subfolders()
        if not self.classes:
            raise _bad(path, "is a folder with no class subfolders", "put the images in one subfolder per class (DIR/cat/1.png, DIR/dog/2.png)")
        self.columns = ["image", "label"]

    def items(self):
        for index, name in enumerate(self.classes):
            for file in self._files(self.path / name, IMAGE_SUFFIXES):
                yield {"image": str(file), "label": index}


class AudioFolderReader(_FolderReader):
    """A folder of WAV files, flat (``DIR/<clip>.wav``: label-free, items ``{"audio": path}``) or
    in class subfolders (``DIR/<class>/<clip>.wav``: items ``{"audio": path, "label": index}``,
    labels the indices of the sorted subfolder names). Each file's header is checked as the file
    is listed (:func:`sparsekit.data.wav.read_wav_header`), so a bad file is refused when the
    source is first read, before any model runs.

    Attributes:
        rates: sample rate (Hz) -> the first file listed with it, over the files listed so far.
    """

    kind = "audio"

    def __init__(self, path: Path, labelled: bool) -> None:
        super().__init__(path)
        self.classes = self._subfolders() if labelled else None
        self.columns = ["audio", "label"] if labelled else ["audio"]
        self.rates: dict[int, Path] = {}

    def _item(self, file: Path) -> dict[str, Any]:
        self.rates.setdefault(read_wav_header(file).rate, file)
        return {"audio": str(file)}

    def items(self):
        if self.classes is None:
            for file in self._files(self.path, AUDIO_SUFFIXES):
                yield self._item(file)
            return
        for index, name in enumerate(self.classes):
            for file in self._files(self.path / name, AUDIO_SUFFIXES):
                yield {**self._item(file), "label": index}


def _audio_layout(path: Path) -> str | None:
    """``flat`` when the folder holds ``.wav`` files, ``classes`` when one of its subfolders
    does (links are not followed here), else None."""
    entries = [e for e in path.iterdir() if not e.name.startswith(".")]
    if any(e.suffix.lower() in AUDIO_SUFFIXES for e in entries):
        return "flat"
    for folder in entries:
        if not folder.is_symlink() and folder.is_dir() and any(f.suffix.lower() in AUDIO_SUFFIXES for f in folder.iterdir()):
            return "classes"
    return None


class DatasetsReader(Reader):
    """A folder written by ``datasets``' ``save_to_disk`` (its ``train`` split for a DatasetDict)."""

    kind = "datasets"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            import datasets
        except ImportError as exc:
            raise MissingDependencyError(f"'{path}' is a folder saved by datasets.save_to_disk, and reading it needs the 'datasets' package, which is not installed", "pip install datasets (or convert it to JSONL / CSV / Parquet)") from exc
        try:
            data = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001 - datasets raises many types for a damaged folder
            raise _bad(path, f"is not a readable datasets folder ({type(exc).__name__})", "save it again with save_to_disk") from exc
        if isinstance(data, datasets.DatasetDict):
            data = data["train"] if "train" in data else data[sorted(data)[0]]
        if len(data) > MAX_ITEMS:
            raise _bad(path, f"has {len(data):,} rows, more than {MAX_ITEMS:,}", "use --max-items")
        self._data = data
        self.columns = list(data.column_names)

    def items(self):
        for batch in self._data.iter(batch_size=1024):
            names = list(batch)
            for i in range(len(batch[names[0]]) if names else 0):
                yield {n: batch[n][i] for n in names}


class TensorReader(Reader):
    """A ``.pt`` (read weights-only: tensors and plain data, never code) or ``.npz`` (no pickles)
    file holding a dict of ``[N, ...]`` arrays keyed by input name (and ``label``)."""

    kind = "tensors"

    def __init__(self, path: Path) -> None:
        import numpy as np

        super().__init__(path)
        size = path.stat().st_size
        if size > MAX_TENSOR_FILE_BYTES:
            raise _bad(path, f"is {size:,} bytes, more than the {MAX_TENSOR_FILE_BYTES:,} a tensor file may have", "split it, or use a streamed format (JSONL, Parquet)")
        if path.suffix == ".npz":
            try:
                _check_npz(path)
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except TrainingDataError:
                raise
            except Exception as exc:  # noqa: BLE001 - numpy raises several types
                raise _bad(path, f"is not a readable .npz of arrays ({type(exc).__name__})", "save it with numpy.savez(path, input=array, label=array)") from exc
        else:
            try:
                data = load_torch_data(path, "data file")
            except SparsekitError:
                raise
            except Exception as exc:  # noqa: BLE001 - torch.load raises several types
                raise _bad(path, f"is not a readable torch file ({type(exc).__name__})", "save it with torch.save({'input': tensor, 'label': tensor}, path)") from exc
            import torch

            if not isinstance(data, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in data.items()):
                raise _bad(path, "does not hold a dict of tensors keyed by input name", "save it with torch.save({'input': tensor, 'label': tensor}, path)")
            data = {k: v.numpy() for k, v in data.items()}
        lengths = {k: (v.shape[0] if v.ndim else 0) for k, v in data.items()}
        if not data or len(set(lengths.values())) != 1:
            raise _bad(path, f"holds arrays of different lengths {lengths}" if data else "holds no arrays", "give every key the same number of samples (axis 0)")
        self._data = data
        self.columns = list(data)

    def items(self):
        n = next(iter(self._data.values())).shape[0]
        for i in range(n):
            yield {k: v[i] for k, v in self._data.items()}


def _check_npz(path: Path) -> None:
    """Refuse an ``.npz`` whose arrays declare more bytes than their members hold, or more in all
    than :data:`MAX_TENSOR_FILE_BYTES`, from the ``.npy`` headers alone (numpy allocates an array
    from its header's shape before reading it).

    Raises:
        TrainingDataError: a member is not a readable ``.npy`` or declares too large an array.
    """
    import zipfile

    import numpy as np

    fmt = np.lib.format
    total = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as member:
                version = fmt.read_magic(member)
                header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = header(member, max_header_size=10_000)
            if dtype.hasobject:
                raise _bad(path, f"array '{info.filename}' holds Python objects (a pickle), which are not read", "save arrays of numbers: numpy.savez(path, input=array, label=array)")
            count = 1
            for n in shape:
                count *= n
            size = count * dtype.itemsize
            total += size
            if size > info.file_size or total > MAX_TENSOR_FILE_BYTES:
                raise _bad(path, f"array '{info.filename}' declares shape {list(shape)} ({size:,} bytes), more than the file holds", "save it again with numpy.savez")


def open_reader(spec: str) -> Reader:
    """The reader for a data ``spec`` (a file or folder), chosen by suffix or folder layout.

    Raises:
        TrainingDataError: missing, empty or unknown kind of file.
        MissingDependencyError: Parquet without pyarrow, a ``datasets`` folder without datasets.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if any((path / m).is_file() for m in _DATASETS_MARKERS):
            return DatasetsReader(path)
        layout = _audio_layout(path)
        if layout is not None:
            return AudioFolderReader(path, labelled=layout == "classes")
        return ImageFolderReader(path)
    if path.exists() and not path.is_file():
        raise _bad(path, "is not a regular file or folder", "give a text / .jsonl / .csv / .parquet / .pt / .npz file or a folder of images in class subfolders or of .wav files")
    if not path.is_file():
        raise TrainingDataError(f"data '{path}' does not exist", "give a text / .jsonl / .csv / .parquet / .pt / .npz file or a folder of images in class subfolders or of .wav files")
    if path.stat().st_size == 0:
        raise _bad(path, "is empty", "give a file with at least one sample")
    suffix = path.suffix.lower()
    readers = {".jsonl": JsonlReader, ".csv": CsvReader, ".parquet": ParquetReader, ".pt": TensorReader, ".pth": TensorReader, ".npz": TensorReader}
    return readers.get(suffix, TextReader)(path)
