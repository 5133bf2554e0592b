"""Sentence retrieval on Python standard-library docstrings with the pretrained MiniLM encoder.

Data (``benchmarks/data/stdlib_docstring_pairs.json``): ``eval`` and ``calib`` hold
``[query, document]`` pairs (query = a docstring's first line, document = its next lines);
``train_text`` holds unpaired docstring texts for distillation. Metrics on ``eval``: recall@1 of
each query against all documents (cosine similarity) and fidelity, the mean cosine between a
model's and the dense model's embeddings of the same texts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from sparsekit.errors import SparsekitError
from sparsekit.tasks.base import EvalResult, Task, register_task
from sparsekit.models.zoo_minilm import minilm_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "stdlib_docstring_pairs.json"
DEFAULT_CORPUS = DEFAULT_DATA.with_name("docstring_corpus.json")
EVAL_SPLITS = ("eval", "eval_large", "heldout", "ood")
"""``eval``: the pairs file's 500; the corpus's ``eval_large`` (2,000 stdlib pairs), ``heldout`` (a
second stdlib split) and ``ood`` (numpy and torch docstrings), made by
``benchmarks/data/make_docstring_corpus.py``."""
CORPORA = ("stdlib", "broad")
"""Training and calibration text: ``stdlib`` (the pairs file's ``train_text`` / ``calib``) or
``broad`` (plus the corpus's ``broad_text``: docstrings of other installed packages)."""


def _is_pair(x) -> bool:
    """A ``[query, document]`` pair of strings."""
    return isinstance(x, list) and len(x) == 2 and all(isinstance(t, str) for t in x)


def load_pairs(path: str | os.PathLike) -> dict:
    """Read and validate the pairs file: ``{"eval": [[q, d]...], "calib": [[q, d]...], "train_text": [str...]}``."""
    p = Path(path)
    if not p.is_file():
        raise SparsekitError(f"docstring pairs file '{p}' does not exist", "pass --data PATH to the JSON (a checkout has it in benchmarks/data/)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        lists_ok = isinstance(data.get("eval"), list) and isinstance(data.get("calib"), list) and isinstance(data.get("train_text"), list)
    except (ValueError, AttributeError) as exc:
        raise SparsekitError(f"'{p}' is not a valid docstring pairs JSON", "pass the stdlib_docstring_pairs.json file") from exc
    if not lists_ok or not data["eval"] or not all(map(_is_pair, data["eval"] + data["calib"])):
        raise SparsekitError(f"'{p}' lacks non-empty 'eval'/'calib' pair lists or a 'train_text' list", "pass the stdlib_docstring_pairs.json file")
    return data


def load_corpus(path: str | os.PathLike, keys: tuple[str, ...]) -> dict:
    """Read the corpus JSON and check that ``keys`` (splits ``[[q, d]...]`` or ``broad_text``) are there.

    Raises:
        SparsekitError: missing, unreadable or truncated file, or a key missing or of the wrong form.
    """
    p = Path(path)
    fix = "run 'python benchmarks/data/make_docstring_corpus.py' to make it again (a checkout has it in benchmarks/data/)"
    if not p.is_file():
        raise SparsekitError(f"docstring corpus '{p}' does not exist", fix)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SparsekitError(f"docstring corpus '{p}' is not valid JSON ({type(exc).__name__})", fix) from exc
    for key in keys:
        value = data.get(key) if isinstance(data, dict) else None
        item_ok = (lambda t: isinstance(t, str)) if key == "broad_text" else _is_pair
        if not isinstance(value, list) or not value or not all(map(item_ok, value)):
            raise SparsekitError(f"docstring corpus '{p}' lacks a non-empty '{key}' list of the right form", fix)
    return data


@register_task("docstrings")
class DocstringsTask(Task):
    name = "docstrings"
    description = "MiniLM sentence retrieval on stdlib docstring pairs; metric: recall@1 (%), fidelity to dense"
    model = ("minilm", {})
    primary = "recall@1"
    distill_output = "cosine"

    def __init__(self, data: str | os.PathLike | None = None, max_length: int = 128, eval_batch: int = 64, eval_split: str = "eval", corpus: str | None = None, corpus_file: str | os.PathLike | None = None) -> None:
        """
        Args:
            data: the pairs JSON (default: ``benchmarks/data/stdlib_docstring_pairs.json``).
            max_length: tokens per text.
            eval_batch: texts per evaluation batch.
            eval_split: one of :data:`EVAL_SPLITS`.
            corpus: training/calibration text, one of :data:`CORPORA`; default ``broad`` when the
                corpus file is there (a checkout), else ``stdlib``.
            corpus_file: the corpus JSON for the larger splits and ``broad`` (default: next to ``data``).
        """
        corpus_path = Path(corpus_file) if corpus_file else Path(data or DEFAULT_DATA).with_name(DEFAULT_CORPUS.name)
        if corpus is None:
            corpus = "broad" if corpus_path.is_file() else "stdlib"
        if eval_split not in EVAL_SPLITS or corpus not in CORPORA:
            raise SparsekitError(f"unknown docstrings split '{eval_split}' or corpus '{corpus}'", f"eval_split: {', '.join(EVAL_SPLITS)}; corpus: {', '.join(CORPORA)}")
        self.data = load_pairs(data or DEFAULT_DATA)
        if eval_split != "eval" or corpus != "stdlib":
            extra = load_corpus(corpus_path, tuple(k for k, needed in ((eval_split, eval_split != "eval"), ("broad_text", corpus == "broad")) if needed))
            if eval_split != "eval":
                self.data = {**self.data, "eval": extra[eval_split]}
            if corpus == "broad":
                # training: stdlib paragraphs + the broad ones; calibration: broad paragraphs first (never an evaluation text)
                self.data = {**self.data, "train_text": self.data["train_text"] + extra["broad_text"], "calib_text": extra["broad_text"]}
        self.eval_split, self.corpus = eval_split, corpus
        self.tokenizer = minilm_tokenizer()
        self.max_length = max_length
        self.eval_batch = eval_batch
        queries = [q for q, _ in self.data["eval"]]
        documents = [d for _, d in self.data["eval"]]
        self._eval_texts = queries + documents

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def _text_batches(self, texts: list[str], batch_size: int) -> list[tuple]:
        return [self._encode(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]

    def train_batches(self, batch_size: int, seed: int = 0, bucket: int = 50):
        """Per-epoch batches of ``train_text``, grouped by length so padding costs little.

        Each epoch shuffles the texts, sorts each run of ``bucket`` batches' worth of texts by
        token length, cuts them into batches and shuffles the batch order. Random batches of
        these docstrings pad to about 107 tokens for a mean length of 32; grouped ones do not.
        """
        texts = list(self.data["train_text"])
        lengths = np.array([len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]])

        def batches(epoch: int):
            rng = np.random.default_rng(seed * 1000 + epoch)
            order = rng.permutation(len(texts))
            span = batch_size * bucket
            order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")] for chunk in np.split(order, range(span, len(order), span))])
            groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            return [(self._encode([texts[j] for j in groups[k]]), None) for k in rng.permutation(len(groups))]

        return batches

    def calibration(self, samples: int, batch_size: int = 16) -> list[tuple]:
        texts = (self.data["calib_text"] if "calib_text" in self.data else [t for pair in self.data["calib"] for t in pair])[:samples]
        return self._text_batches(texts, batch_size)

    @torch.no_grad()
    def embed(self, model, texts: list[str]) -> np.ndarray:
        """Embeddings ``[len(texts), D]`` (float32), batched by length."""
        model.eval()
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        chunks = []
        for i in range(0, len(texts), self.eval_batch):
            ids, mask = self._encode([texts[j] for j in order[i : i + self.eval_batch]])
            chunks.append(model(ids, mask).float().numpy())
        emb = np.concatenate(chunks)
        result = np.empty_like(emb)
        result[order] = emb
        return result

    def evaluate(self, model, reference: EvalResult | None = None) -> EvalResult:
        emb = self.embed(model, self._eval_texts)
        n = len(self.data["eval"])
        q, d = _unit(emb[:n]), _unit(emb[n:])
        hits = (np.argmax(q @ d.T, axis=1) == np.arange(n)).astype(np.float64)
        metrics = {"recall@1": 100.0 * float(hits.mean())}
        if reference is not None:
            metrics["fidelity"] = float(np.mean(np.sum(_unit(emb) * _unit(reference.outputs), axis=1)))
        return EvalResult(metrics, hits, emb)

    def feature_layers(self, model) -> list[str]:
        names = [n for n, _ in model.named_modules()]
        return [n for n in names if n.count(".") == 3 and n.startswith("bert.encoder.layer.")]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
