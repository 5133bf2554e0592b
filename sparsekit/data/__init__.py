"""Your own data, read as data: text files, JSONL / CSV / Parquet with named columns, image folders,
WAV folders, ``datasets.save_to_disk`` folders and tensor files, streamed in batches, split
deterministically, and turned into the model's inputs by the ``hf:DIR`` folder's processors
(tokenizer, image processor, feature extractor) or a ``FILE.py:FUNCTION``
named on the command line. :class:`~sparsekit.data.config.DataConfig` holds the settings (the
``--data`` options and a recipe's ``data:`` section); :mod:`sparsekit.tasks.data_task` builds the
task (distillation, fidelity, accuracy) on top."""

from sparsekit.data.config import DataConfig

__all__ = ["DataConfig"]
