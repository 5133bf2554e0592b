"""Calibration batches (SparseGPT, INT8 PTQ) from a data source: the first training items of its
split, never evaluation ones, preprocessed into the model's inputs."""

from __future__ import annotations

from sparsekit.data.config import DataConfig
from sparsekit.errors import CalibrationDataError, TrainingDataError
from sparsekit.data.preprocess import Preprocessor
from sparsekit.data.source import UserData
from sparsekit.models.calib import check_batches


def data_calibration(loaded, config: DataConfig, samples: int, batch_size: int = 8) -> list[tuple]:
    """Up to ``samples`` calibration inputs of ``loaded`` from ``config``'s source, in batches.

    Raises:
        CalibrationDataError: the data is unusable (one line naming the problem, as for training).
        MissingDependencyError: a reader's optional package is missing.
    """
    try:
        data = UserData(config)
        pre = Preprocessor(loaded, data, config.max_length)
        batches, chunk = [], []
        for index, item in data.items("train"):
            chunk.append((index, item))
            if len(chunk) == batch_size:
                batches.append(pre.batch([it for _, it in chunk], [i for i, _ in chunk]))
                chunk = []
            if len(batches) * batch_size + len(chunk) >= samples:
                break
        if chunk:
            batches.append(pre.batch([it for _, it in chunk], [i for i, _ in chunk]))
    except TrainingDataError as exc:
        raise CalibrationDataError(exc.problem, exc.fix) from exc
    check_batches(batches, loaded.inputs)
    return batches
