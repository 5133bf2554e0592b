"""Calibration data for SparseGPT and INT8 calibration: the model's own random inputs, a tensor
file, a user loader, or text tokenized by a Hugging Face model folder's tokenizer, always checked
against the model's input spec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from sparsekit.errors import CalibrationDataError
from sparsekit.input_spec import InputSpec
from sparsekit.models import hf
from sparsekit.models.build import load_callable


def _as_batches(data: Any, spec: InputSpec, batch_size: int) -> list[tuple]:
    import numpy as np
    import torch

    if isinstance(data, dict):
        missing = [n for n in spec.names if n not in data]
        if missing:
            raise CalibrationDataError(f"calibration data lacks input(s) {missing}", f"provide tensors named {spec.names}")
        columns = [torch.as_tensor(np.asarray(data[n])) if not torch.is_tensor(data[n]) else data[n] for n in spec.names]
    elif torch.is_tensor(data) or isinstance(data, np.ndarray):
        if len(spec.tensors) != 1:
            raise CalibrationDataError(f"one calibration tensor given, the model takes {len(spec.tensors)} inputs", f"save a dict with keys {spec.names}")
        columns = [torch.as_tensor(data)]
    else:
        batches = [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in data]
        if not batches:
            raise CalibrationDataError("the calibration loader yielded no batches", "give at least one batch")
        for b in batches:
            _check_batch(b, spec)
        return batches
    n = columns[0].shape[0]
    if n == 0:
        raise CalibrationDataError("the calibration data is empty", "give at least one sample")
    batches = [tuple(c[i : i + batch_size] for c in columns) for i in range(0, n, batch_size)]
    for b in batches:
        _check_batch(b, spec)
    return batches


def _check_batch(batch: tuple, spec: InputSpec) -> None:
    if len(batch) != len(spec.tensors):
        raise CalibrationDataError(f"a calibration batch has {len(batch)} tensors, the model takes {len(spec.tensors)}", f"yield tuples ordered as {spec.names}")
    for tensor, want in zip(batch, spec.tensors):
        got = tuple(tensor.shape[1:])
        dynamic = set(want.axes)
        fits = len(got) == len(want.shape) - 1 and all(g == w or axis in dynamic for axis, (g, w) in enumerate(zip(got, want.shape[1:]), start=1))
        if not fits:
            raise CalibrationDataError(
                f"calibration input '{want.name}' has sample shape {list(got)}, the model expects {list(want.shape[1:])}",
                "reshape the data to [N, " + ", ".join(map(str, want.shape[1:])) + "]",
            )
        if want.dtype.startswith("int") != (not tensor.dtype.is_floating_point):
            raise CalibrationDataError(f"calibration input '{want.name}' is {tensor.dtype}, the model expects {want.dtype}", f"convert it to {want.dtype}")


def check_batches(batches: list[tuple], spec: InputSpec) -> None:
    """Check calibration batches made elsewhere (a data source) against the model's input spec.

    Raises:
        CalibrationDataError: no batch, or one whose tensors do not fit ``spec``.
    """
    if not batches:
        raise CalibrationDataError("the calibration data gave no batch", "give at least one training item")
    for b in batches:
        _check_batch(b, spec)


def load_calibration(source: str | None, spec: InputSpec, samples: int = 64, batch_size: int = 8, seed: int = 0) -> list[tuple]:
    """Calibration batches for a model.

    Args:
        source: ``None`` (random inputs drawn from the input spec), a ``.pt``/``.npy``/``.npz`` file
            holding ``[N, ...]`` samples (a dict by input name for several inputs), or a
            ``module:function`` / ``file.py:function`` returning an iterable of batches.
        spec: the model's input spec.
        samples: number of samples for random data.
        batch_size: batch size used to split tensor files and random data.
        seed: seed for random data.

    Returns:
        A list of input tuples, each with the batch dimension first.

    Raises:
        CalibrationDataError: missing/unreadable file or wrong shapes/dtypes.
    """
    import numpy as np
    import torch

    if source is None:
        n_batches = max(1, samples // batch_size)
        return [spec.random(batch=batch_size, seed=seed + i) for i in range(n_batches)]
    path = Path(source)
    if path.suffix in (".pt", ".pth", ".npy", ".npz"):
        if not path.is_file():
            raise CalibrationDataError(f"calibration file '{path}' does not exist", "check the path")
        try:
            if path.suffix in (".pt", ".pth"):
                data = torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".npy":
                data = np.load(path)
            else:
                data = dict(np.load(path))
        except Exception as exc:
            raise CalibrationDataError(f"cannot read calibration file '{path}' ({type(exc).__name__})", "save it with torch.save or numpy.save") from exc
        return _as_batches(data, spec, batch_size)
    if ":" in source:
        try:
            data = load_callable(source)()
        except CalibrationDataError:
            raise
        except Exception as exc:
            raise CalibrationDataError(f"calibration loader '{source}' failed: {exc}", "fix the loader") from exc
        return _as_batches(data, spec, batch_size)
    raise CalibrationDataError(f"cannot use '{source}' as calibration data", "give a .pt/.npy/.npz file or module:function")


def load_text_calibration(loaded, path: str | os.PathLike, samples: int = 64, batch_size: int = 8) -> list[tuple]:
    """Calibration batches from a text file (one text per line), tokenized by the tokenizer saved
    in the model's Hugging Face folder, padded/truncated to the model's sequence length.

    Args:
        loaded: a :class:`~sparsekit.models.loaded.LoadedModel` from ``hf:DIR`` (or a checkpoint of one).
        path: the text file.
        samples: at most this many lines are used.
        batch_size: texts per batch.

    Raises:
        CalibrationDataError: the model has no Hugging Face folder, the folder no tokenizer, or the file no text.
    """
    spec = str(loaded.source.get("spec", ""))
    if loaded.source.get("kind") != "hf" or not spec.startswith(hf.PREFIX):
        raise CalibrationDataError(f"--calib-text needs a tokenizer, and '{loaded.name}' is not a Hugging Face model folder", "load the model as hf:DIR (a save_pretrained folder with its tokenizer), or calibrate with --calib")
    batches = hf.text_batches(hf.hf_folder(spec), loaded.inputs, path, samples, batch_size)
    for b in batches:
        _check_batch(b, loaded.inputs)
    return batches


def calibration_for(loaded, calib: str | None = None, calib_text: str | os.PathLike | None = None, samples: int = 64, batch_size: int = 8, given: list[tuple] | None = None) -> list[tuple]:
    """Calibration batches for ``loaded``: ``given`` (made from a data source, ``--data``), from
    text (``calib_text``, tokenized by its Hugging Face folder's tokenizer), from ``calib`` (see
    :func:`load_calibration`), or its random inputs.

    Raises:
        CalibrationDataError: several sources given, or the chosen one is unusable.
    """
    if sum(bool(x) for x in (calib, calib_text, given)) > 1:
        raise CalibrationDataError("more than one of --calib, --calib-text and --data were given", "give one calibration source")
    if given:
        check_batches(given, loaded.inputs)
        return given
    if calib_text:
        return load_text_calibration(loaded, calib_text, samples, batch_size)
    return load_calibration(calib, loaded.inputs, samples, batch_size)


def forward_loop(batches: Iterable[tuple]):
    """A ModelOpt-style ``forward_loop(model)`` that runs ``model(*batch)`` over ``batches`` without grads."""
    import torch

    def run(model):
        with torch.no_grad():
            for batch in batches:
                model(*batch)

    return run
