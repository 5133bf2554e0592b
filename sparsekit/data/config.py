"""The settings of a user data source, declared once: the ``data options`` of ``finetune``,
``sensitivity``, ``prune``, ``sparsify`` and ``export``, and the ``data:`` section of a recipe.
Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsekit.config import StrictConfig

FAMILIES = ("auto", "classifier", "encoder", "causal-lm")
"""What a model's outputs are, which decides the distillation loss and the fidelity metrics:
``classifier`` (logits ``[B, C]``: logit KD, top-1 agreement, KL), ``encoder`` (hidden states or
embeddings: cosine), ``causal-lm`` (next-token logits ``[B, S, V]``: token-level KL, perplexity
ratio). ``auto`` reads it from the model's class (``...ForSequenceClassification``,
``...ForCausalLM``, ``...Model``)."""


class DataConfig(StrictConfig):
    """Your own data: a file or folder read as data, split deterministically into training
    (calibration is drawn from it) and evaluation items, by ``eval_fraction`` or by the file's own
    ``split_column``."""

    source: str | None = Field(None, description="your data: a text file (one sample a line), .jsonl / .csv / .parquet with named columns, a folder of images in class subfolders, a folder of .wav files (flat, or in class subfolders), a datasets.save_to_disk folder, or a .pt / .npz of tensors keyed by input name; with a registered --task, that task's own data file", json_schema_extra={"flags": ["--data"], "metavar": "SPEC"})
    text_column: str = Field("text", description="column holding the text (JSONL, CSV, Parquet, datasets)", json_schema_extra={"metavar": "NAME"})
    label_column: str | None = Field(None, description="column holding the label (default: 'label' when the file has one); with labels, evaluation adds accuracy and macro-F1", json_schema_extra={"metavar": "NAME"})
    pair_column: str | None = Field(None, description="column holding the second text of a pair: the document of a retrieval pair (encoders: recall@1) or the hypothesis of an NLI pair (classifiers: a sentence pair)", json_schema_extra={"metavar": "NAME"})
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share of the items held out for evaluation (chosen per item from split_seed: the same file gives the same split); not used with split_column", json_schema_extra={"metavar": "F"})
    split_column: str | None = Field(None, description="column naming each item's split: train (training and calibration) or eval (evaluation; validation and test are read as eval); given, it replaces the eval_fraction split, and an item needs only the columns of its split (a retrieval file's train rows may have text only)", json_schema_extra={"metavar": "NAME"})
    split_seed: int = Field(0, ge=0, description="seed of the train / evaluation split and of the training order")
    max_items: int | None = Field(None, ge=1, description="read at most this many items of the source (default: all)")
    max_eval: int = Field(2000, ge=1, description="evaluate on at most this many of the held-out items (kept in memory, preprocessed once)")
    max_length: int | None = Field(None, ge=1, description="tokens per text (default: the model's sequence length); longer texts are truncated and counted in the report", json_schema_extra={"metavar": "TOKENS"})
    eval_batch: int = Field(32, ge=1, description="items per evaluation batch")
    preprocess: str | None = Field(None, description="your FILE.py:FUNCTION turning a list of items (dicts of the columns) into the model's inputs (a dict by input name, or a tuple in input order); default: the hf:DIR folder's tokenizer / image processor, or plain tensors", json_schema_extra={"metavar": "FILE.py:FN"})
    cache: bool = Field(True, description="keep the tokenized / image-processed inputs of the data on disk, keyed by the content hashes of the data and the preprocessing, and reuse them (in $SPARSEKIT_CACHE_DIR/data, else $XDG_CACHE_HOME/sparsekit/data or ~/.cache/sparsekit/data; sources over 2 GiB of inputs are streamed); --no-data-cache reads and writes nothing there", json_schema_extra={"flags": ["--data-cache"]})
    family: Literal[FAMILIES] = Field("auto", description="what the model outputs, deciding distillation loss and fidelity metrics: classifier (logit KD, agreement), encoder (cosine), causal-lm (token-level KL, perplexity ratio); auto reads the model's class")
