"""Items -> the model's inputs, in the order of ``loaded.inputs``.

Where the inputs come from, first match wins:

1. the user's ``FILE.py:FUNCTION`` (``--preprocess``), run only because it is named on this command
   line (:func:`sparsekit.models.trust.require_allowed`): ``fn(items, input_names)`` returns a dict
   by input name or a tuple in input order;
2. columns named like the inputs (tensor files, or numbers in a JSONL / CSV / Parquet column):
   stacked and reshaped to each input's sample shape;
3. text (``--text-column``) with the tokenizer of the ``hf:DIR`` folder (texts longer than the
   model's positions are truncated and counted);
4. images (an image folder) with the folder's image processor, or resized to the input's
   ``[C, H, W]`` and scaled to ``[0, 1]`` when the model has no processor (factories, zoo CNNs);
5. audio (a folder of WAV files) with the folder's feature extractor
   (:mod:`sparsekit.data.audio_inputs`).

Processor classes are transformers' own (``AutoTokenizer``, ``AutoImageProcessor``), loaded with
``local_files_only=True`` and remote code only when the trust policy allows it, never a prompt;
``AutoFeatureExtractor`` never with remote code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from sparsekit.data.audio_inputs import AudioInputs
from sparsekit.data.readers import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from sparsekit.data.source import UserData
from sparsekit.errors import SparsekitError, TrainingDataError
from sparsekit.models.build import load_callable
from sparsekit.models.hf import _quiet, _transformers
from sparsekit.models.trust import require_allowed, current_policy
from sparsekit._lazy import lazy_import
from sparsekit.data.cache import open_cache

Image = lazy_import("PIL.Image")

log = logging.getLogger(__name__)


def hf_folder_of(loaded) -> Path | None:
    """The ``hf:DIR`` folder a model (or the checkpoint of one) was loaded from, if it is still there."""
    spec = str(loaded.source.get("spec", ""))
    if loaded.source.get("kind") != "hf" or not spec.startswith("hf:"):
        return None
    path = Path(spec[3:])
    return path if path.is_dir() else None


class Preprocessor:
    """Turns a list of items into a tuple of input tensors (see the module docstring).

    Attributes:
        names: the model's input names, in order.
        how: which route makes the inputs (``user``, ``columns``, ``tokenizer``, ``image-processor``,
            ``images``, ``feature-extractor``).
        max_length: tokens per text (text routes).
        truncated: texts cut to ``max_length`` so far.
        texts: texts tokenized so far.
        folder: the ``hf:DIR`` folder of the model (its processors), or None.
        cache: the cached inputs of the whole source (:mod:`sparsekit.data.cache`) once
            :meth:`batch` opened them; None when off or not cacheable.
    """

    def __init__(self, loaded, data: UserData, max_length: int | None = None, pair_as_second_text: bool = False) -> None:
        self.spec = loaded.inputs
        self.names = list(self.spec.names)
        self.data = data
        self.truncated = 0
        self.texts = 0
        self.pair_as_second_text = pair_as_second_text
        columns = data.reader.columns
        folder = self.folder = hf_folder_of(loaded)
        self.cache = None
        self._cache_opened = not data.config.cache
        self.tokenizer = self.image_processor = self.audio = None
        self._user: Callable | None = None
        first = self.spec.tensors[0] if self.spec.tensors else None
        if not self.names:
            raise TrainingDataError(f"the model '{loaded.name}' declares no inputs to feed data to", "give its inputs with --input-shape")
        if data.config.preprocess:
            self.how = "user"
            self._user = _user_function(data.config.preprocess)
        elif all(n in columns for n in self.names):
            self.how = "columns"
        elif "image" in columns and data.reader.kind == "images":
            if first.is_integer or len(first.shape) != 4:
                raise TrainingDataError(f"data '{data.reader.path}' holds images, and the model's first input '{first.name}' is {first.dtype} {list(first.shape)}", "use an image model (input [B, C, H, W] float), or give --preprocess FILE.py:FN")
            self.image_processor = _image_processor(folder) if folder else None
            self.how = "image-processor" if self.image_processor is not None else "images"
        elif "audio" in columns and data.reader.kind == "audio":
            self.audio = AudioInputs(loaded, folder)
            self.audio.check_rates(data.reader.rates)
            self.how = "feature-extractor"
        elif first.name == "input_ids":
            if data.config.text_column not in columns:
                raise data.missing_column(data.config.text_column, "--text-column")
            if folder is None:
                raise TrainingDataError(f"text data needs a tokenizer, and '{loaded.name}' is not loaded from a Hugging Face folder", "load the model as hf:DIR (saved with its tokenizer), or give --preprocess FILE.py:FN")
            self.tokenizer = load_tokenizer(folder)
            self.how = "tokenizer"
        else:
            missing = [n for n in self.names if n not in columns]
            if data.config.text_column not in columns and data.reader.kind != "images":
                raise data.missing_column(missing[0], "columns named like the model's inputs, or --preprocess FILE.py:FN")
            raise TrainingDataError(f"cannot make the model's inputs {self.names} from data '{data.reader.path}' (columns: {', '.join(columns)})", "give --preprocess FILE.py:FN, or columns named like the inputs")
        seq = first.shape[1] if len(first.shape) == 2 else None
        self.max_length = int(max_length or seq or 128)

    def report(self) -> dict:
        """How inputs were made, and how many texts were truncated."""
        out: dict[str, Any] = {"preprocess": self.how, "cache": "off" if not self.data.config.cache else self.cache.status if self.cache else "not cached"}
        if self.how in ("tokenizer", "user") and self.texts:
            out.update(max_length=self.max_length, texts=self.texts, truncated=self.truncated)
        if self.audio is not None:
            out.update(self.audio.report())
        return out

    def __call__(self, items: Sequence[dict], column: str | None = None) -> tuple:
        """Input tensors ``(B, ...)`` for ``items``; ``column`` overrides the text column
        (a retrieval pair's documents are encoded on their own)."""
        if self.how == "user":
            return self._from_user(items)
        if self.how == "columns":
            return self._from_columns(items)
        if self.how == "tokenizer":
            return self._from_text(items, column or self.data.config.text_column)
        if self.how == "feature-extractor":
            return self._ordered(self.audio([item["audio"] for item in items]), f"the feature extractor of '{self.folder}'")
        return self._from_images(items)

    def batch(self, items: Sequence[dict], indices: Sequence[int] | None = None) -> tuple:
        """Input tensors ``(B, ...)`` for ``items``, the source's items ``indices``: from the cache
        of the whole source's inputs when it is on (built on first use), else made here."""
        if indices is not None and not self._cache_opened:

            self._cache_opened = True
            self.cache = open_cache(self)
        if indices is None or self.cache is None:
            return self(items)
        made, truncated = self.cache.batch(indices)
        if self.how == "tokenizer":
            self.texts += len(indices)
            self.truncated += truncated
            if "token_type_ids" in self.names and "token_type_ids" not in made:
                import torch

                made["token_type_ids"] = torch.zeros_like(made["input_ids"])  # one segment, as _from_text
            return self._ordered(made, f"the tokenizer of '{self.folder}'")
        return self._ordered(made, f"the cached inputs of '{self.data.reader.path}'")

    def unpadded(self, items: Sequence[dict]) -> tuple[dict[str, list], list[int]]:
        """Text route: ``({input name: one 1-D tensor per item}, each text's length before
        truncation)``, truncated to ``max_length`` and not padded (what the cache keeps)."""
        import torch

        args, _ = self._text_args(items, self.data.config.text_column)
        full = [len(ids) for ids in self.tokenizer(*args, truncation=False)["input_ids"]]
        enc = self.tokenizer(*args, truncation=True, max_length=self.max_length)
        dtypes = {t.name: getattr(torch, t.dtype) for t in self.spec.tensors}
        return {n: [torch.tensor(row, dtype=dtypes[n]) for row in enc[n]] for n in self.names if n in enc}, full

    def pad_values(self) -> dict[str, int]:
        """The value the tokenizer pads each text input with."""
        pads = {"input_ids": self.tokenizer.pad_token_id, "token_type_ids": getattr(self.tokenizer, "pad_token_type_id", 0), "attention_mask": 0, "special_tokens_mask": 1}
        return {n: int(pads.get(n) or 0) for n in self.names}

    # ---- routes ------------------------------------------------------------------------------

    def _ordered(self, produced: Any, origin: str) -> tuple:
        """``produced`` (dict by name or tuple in order) as a tuple of tensors in input order, typed."""
        import torch

        if isinstance(produced, dict):
            missing = [n for n in self.names if n not in produced]
            if missing:
                raise TrainingDataError(f"{origin} did not produce input(s) {missing} (it made {', '.join(map(str, produced)) or 'nothing'})", f"return a dict with keys {self.names}")
            produced = [produced[n] for n in self.names]
        if torch.is_tensor(produced):
            produced = (produced,)
        if not isinstance(produced, (tuple, list)) or len(produced) != len(self.names):
            raise TrainingDataError(f"{origin} returned {type(produced).__name__}, not {len(self.names)} input(s) {self.names}", "return a dict by input name or a tuple in input order")
        out = []
        for value, want in zip(produced, self.spec.tensors):
            tensor = value if torch.is_tensor(value) else torch.as_tensor(value)
            out.append(tensor.to(getattr(torch, want.dtype)))
        return tuple(out)

    def _from_user(self, items) -> tuple:
        try:
            produced = self._user(list(items), list(self.names))
        except SparsekitError:
            raise
        except Exception as exc:  # user code: report what it raised
            raise TrainingDataError(f"--preprocess '{self.data.config.preprocess}' raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", "fix the preprocess function") from exc
        return self._ordered(produced, f"--preprocess '{self.data.config.preprocess}'")

    def _from_columns(self, items) -> tuple:
        import numpy as np

        columns = {}
        for want in self.spec.tensors:
            rows = []
            for item in items:
                if want.name not in item:
                    raise TrainingDataError(f"data '{self.data.reader.path}': a row has no '{want.name}', which the first row has", f"give every row a '{want.name}' value")
                array = _as_array(item[want.name], want.name, self.data.reader.path)
                sample = tuple(want.shape[1:])
                if array.size != int(np.prod(sample)) and not want.dynamic:
                    raise TrainingDataError(f"data '{self.data.reader.path}': column '{want.name}' holds {array.size} values per item, the model's input takes {list(sample)}", f"give {int(np.prod(sample))} values per item")
                rows.append(array.reshape(sample) if array.size == int(np.prod(sample)) else array)
            columns[want.name] = np.stack(rows)
        return self._ordered(columns, f"data '{self.data.reader.path}'")

    def _text_args(self, items, column: str) -> tuple[tuple, str | None]:
        """The tokenizer's positional arguments for ``items`` (texts, and the second texts of a
        pair), and the pair column or None."""
        texts, seconds = [], []
        pair = self.data.config.pair_column if self.pair_as_second_text and column == self.data.config.text_column else None
        for item in items:
            if column not in item:
                raise self.data.missing_column(column, "--text-column" if column == self.data.config.text_column else "--pair-column")
            texts.append(str(item[column]))
            if pair:
                if pair not in item:
                    raise self.data.missing_column(pair, "--pair-column")
                seconds.append(str(item[pair]))
        return ((texts, seconds) if pair else (texts,)), pair

    def _from_text(self, items, column: str) -> tuple:
        args, pair = self._text_args(items, column)
        texts = args[0]
        lengths = self.tokenizer(*args, truncation=False)["input_ids"]
        self.truncated += sum(len(ids) > self.max_length for ids in lengths)
        self.texts += len(texts)
        enc = dict(self.tokenizer(*args, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))
        if "token_type_ids" in self.names and "token_type_ids" not in enc and not pair:
            import torch

            enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])  # one segment: every token is of type 0
        return self._ordered(enc, f"the tokenizer of '{self.tokenizer.name_or_path}'")

    def _from_images(self, items) -> tuple:
        import numpy as np
        import torch

        want = self.spec.tensors[0]
        channels, height, width = want.shape[1:]
        images = [_open_image(item["image"], "L" if channels == 1 else "RGB") for item in items]
        if self.image_processor is not None:
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        else:
            arrays = [np.asarray(im.resize((width, height)), dtype=np.float32) / 255.0 for im in images]
            pixels = torch.from_numpy(np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays]))
        return self._ordered((pixels,) if len(self.names) == 1 else {"pixel_values": pixels}, f"the images of '{self.data.reader.path}'")


def _as_array(value: Any, name: str, path):
    """A column value as a float/int array: an array, a list, a JSON list or space/comma-separated numbers."""
    import json

    import numpy as np

    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [float(x) for x in text.replace(",", " ").split()]
        except (ValueError, RecursionError) as exc:
            raise TrainingDataError(f"data '{path}': column '{name}' holds '{text[:40]}', not numbers", "write the input's values as a JSON list or space-separated numbers") from exc
    try:
        return np.asarray(value, dtype=np.float64 if not isinstance(value, np.ndarray) else value.dtype)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TrainingDataError(f"data '{path}': column '{name}' does not hold numbers", "write the input's values as a list of numbers") from exc


def _open_image(path: str, mode: str):
    """The decoded image at ``path`` in ``mode``, its byte and pixel counts checked before decoding.

    Raises:
        TrainingDataError: too large, or not an image Pillow can decode.
    """
    file = Path(path)
    size = file.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise TrainingDataError(f"image '{file}' is {size:,} bytes, more than {MAX_IMAGE_BYTES:,}", "resize or remove it")
    try:
        with Image.open(file) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise TrainingDataError(f"image '{file}' declares {im.width}x{im.height} pixels, more than {MAX_IMAGE_PIXELS:,}", "resize or remove it")
            return im.convert(mode)
    except TrainingDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged file
        raise TrainingDataError(f"image '{file}' cannot be decoded ({type(exc).__name__})", "remove or replace the file") from exc


def _user_function(spec: str) -> Callable:
    """The user's ``FILE.py:FUNCTION``, only when named in this invocation."""
    if ":" not in spec:
        raise SparsekitError(f"--preprocess '{spec}' is not FILE.py:FUNCTION", "e.g. --preprocess prep.py:preprocess")
    require_allowed(spec, "--preprocess")
    return load_callable(spec)


def _remote() -> bool:
    return current_policy().remote_code


def load_tokenizer(folder: Path):
    """The folder's tokenizer (``AutoTokenizer``, offline), with a pad token (a causal LM's end-of-text
    token where it has none).

    Raises:
        TrainingDataError: the folder has no usable tokenizer.
    """
    tf = _transformers()
    with _quiet():
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=_remote())
        except Exception as exc:  # noqa: BLE001 - transformers raises many types
            raise TrainingDataError(f"the model folder '{folder}' has no usable tokenizer ({type(exc).__name__})", "save the tokenizer next to the model (tokenizer.save_pretrained(DIR)), or give --preprocess FILE.py:FN") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise TrainingDataError(f"the tokenizer of '{folder}' has no pad, end-of-text or unknown token to pad batches with", "give it a pad token (tokenizer.pad_token = ...) and save it again")
    tokenizer.model_max_length = int(1e9)  # lengths are counted by the kit; no warning per long text
    return tokenizer


def _image_processor(folder: Path):
    """The folder's image processor (``AutoImageProcessor``, offline), or None when it has none."""
    if not (folder / "preprocessor_config.json").is_file():
        return None
    tf = _transformers()
    with _quiet():
        try:
            return tf.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, trust_remote_code=_remote())
        except Exception as exc:  # noqa: BLE001
            raise TrainingDataError(f"the image processor of '{folder}' cannot be loaded ({type(exc).__name__})", "save it again with image_processor.save_pretrained(DIR), or give --preprocess FILE.py:FN") from exc
