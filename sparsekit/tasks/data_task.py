"""A task over the user's own data (:mod:`sparsekit.data`): label-free by default, labelled when the
data has labels.

The model family (:data:`sparsekit.data.config.FAMILIES`, read from the model's class unless given)
decides the distillation loss and the fidelity metrics against the dense model:

* ``classifier`` (logits ``[B, C]``): logit KD; ``agreement`` (% of items whose top-1 class equals
  the dense model's) and ``kl`` (mean KL(dense || model)); with labels ``accuracy`` and ``macro_f1``
  and a supervised loss (cross-entropy);
* ``encoder`` (hidden states ``[B, S, H]`` or embeddings ``[B, D]``): cosine distillation;
  ``cosine`` (100 x mean cosine of the mean-pooled embeddings to the dense model's); with a pair
  column ``recall@1`` of each text against all pair texts;
* ``causal-lm`` (next-token logits ``[B, S, V]``): token-level KL; ``agreement`` (% of tokens whose
  top-1 next token equals the dense model's), ``kl`` (per token, over the dense model's top-16 tokens
  plus one bucket for the rest, a lower bound of the full KL), ``perplexity`` of the texts and
  ``ppl_ratio`` to the dense model's. A seq2seq model without ``input_ids`` (Whisper on audio) is
  fed its decoder start token only, so ``auto`` scores it as a classifier over its first token's
  logits (agreement, KL; labels are not used).

Every metric a model is ranked by carries a 95% bootstrap interval over items (``_low``/``_high``),
and next to a reference (the dense model) its paired difference (``_vs_dense`` and its interval).
Without a reference a model is its own: agreement 100, cosine 100, KL 0.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sparsekit.data.config import DataConfig
from sparsekit.data.preprocess import Preprocessor
from sparsekit.data.source import UserData, _label_key
from sparsekit.errors import TrainingDataError
from sparsekit.tasks.base import EvalResult, Task, check_batch_fits
from sparsekit.tasks.metrics import macro_f1, with_interval, with_paired

log = logging.getLogger(__name__)

DISTILL_OUTPUT = {"classifier": "logits", "encoder": "cosine", "causal-lm": "logits"}
"""The output loss of :func:`sparsekit.recover.distill.distillation_model` per family (the logit
loss of a causal LM is ModelOpt's KL over the vocabulary at every position: token-level KL)."""
TOP_K = 16
"""Tokens per position kept of a causal LM's evaluation outputs (the reference for KL)."""
SHUFFLE_BUFFER = 4096
"""Items held at once to shuffle the training stream."""
LENGTH_BUCKET = 50
"""Text training: batches' worth of shuffled items sorted by length together, so a batch pads to
about its own texts' length instead of the longest of a random draw."""


def model_family(model) -> str:
    """``classifier``, ``encoder`` or ``causal-lm`` from the model's class name (the one loaded,
    else its config's ``architectures``); models that are not from transformers are classifiers."""
    names = [type(model).__name__, *(getattr(getattr(model, "config", None), "architectures", None) or [])]
    for name in map(str, names):
        if name.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
            return "causal-lm"
        if "Classification" in name:
            return "classifier"
    if any(str(n).endswith("Encoder") for n in names) or (getattr(model, "config", None) is not None and any(str(n).endswith("Model") for n in names)):
        return "encoder"
    return "classifier"


def _output(value) -> torch.Tensor:
    """The first tensor of a model output."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


class _Epoch:
    """One epoch's training batches, streamed: items pass a seeded shuffle buffer and are made into
    inputs a batch at a time (the same epoch gives the same batches).

    Text is grouped by length: every :data:`LENGTH_BUCKET` batches' worth of shuffled items (fewer
    where that would hold more than :data:`SHUFFLE_BUFFER` items) is sorted by characters (text
    plus a classifier's second text), cut into batches, and the batches are yielded in a shuffled
    order, so each batch pads to about its own texts' length (on paragraphs of mixed length,
    several times fewer padded positions). Images, audio and tensors have one size and keep the
    shuffled order.
    """

    def __init__(self, task: "DataTask", batch_size: int, seed: int, epoch: int) -> None:
        self.task, self.batch_size, self.seed, self.epoch = task, batch_size, seed, epoch

    def __len__(self) -> int:
        return math.ceil(self.task.data.counts["train"] / self.batch_size)

    def __bool__(self) -> bool:
        return len(self) > 0

    def _items(self) -> Iterator[tuple[int, dict]]:
        rng = np.random.default_rng([self.seed, self.task.data.config.split_seed, self.epoch])
        buffer: list[tuple[int, dict]] = []
        for pair in self.task.data.items("train"):
            buffer.append(pair)
            if len(buffer) >= SHUFFLE_BUFFER:
                i = int(rng.integers(len(buffer)))
                buffer[i], buffer[-1] = buffer[-1], buffer[i]
                yield buffer.pop()
        for i in rng.permutation(len(buffer)):
            yield buffer[i]

    def _groups(self) -> Iterator[list[tuple[int, dict]]]:
        """The epoch's batches of ``(index, item)``, grouped by length where the inputs are text."""
        length = self.task.text_length
        if length is None:
            yield from _runs(self._items(), self.batch_size)
            return
        # at most LENGTH_BUCKET batches sorted together, and no more items held than the shuffle buffer (or one batch)
        span = self.batch_size * max(1, min(LENGTH_BUCKET, SHUFFLE_BUFFER // self.batch_size))
        rng = np.random.default_rng([self.seed, self.task.data.config.split_seed, self.epoch, 1])
        for run in _runs(self._items(), span):
            run.sort(key=lambda pair: length(pair[1]))
            batches = list(_runs(iter(run), self.batch_size))
            for i in rng.permutation(len(batches)):
                yield batches[i]

    def __iter__(self):
        for chunk in self._groups():
            yield self.task.make_batch(*_split(chunk))

    def __getitem__(self, index):
        from itertools import islice

        if isinstance(index, slice):
            return list(islice(iter(self), index.start or 0, index.stop, index.step))
        found = list(islice(iter(self), index, index + 1))
        if not found:
            raise IndexError(index)
        return found[0]


def _runs(pairs: Iterator[tuple[int, dict]], size: int) -> Iterator[list[tuple[int, dict]]]:
    """``pairs`` in consecutive lists of ``size`` (the last may be shorter)."""
    run: list[tuple[int, dict]] = []
    for pair in pairs:
        run.append(pair)
        if len(run) == size:
            yield run
            run = []
    if run:
        yield run


def _split(pairs: list[tuple[int, dict]]) -> tuple[list[dict], list[int]]:
    """``(items, indices)`` of ``(index, item)`` pairs."""
    return [item for _, item in pairs], [index for index, _ in pairs]


class DataTask(Task):
    """The task of a data source for one model (see the module docstring).

    Args:
        loaded: the model as loaded (its inputs, source folder and class decide preprocessing
            and family).
        config: the data settings.
        data: an already opened source (default: opened from ``config``).
    """

    description = "your own data: distillation from the dense model, fidelity to it, accuracy where there are labels"

    def __init__(self, loaded, config: DataConfig, data: UserData | None = None) -> None:
        self.data = data or UserData(config)
        self.config = config
        self.family = model_family(loaded.model) if config.family == "auto" else config.family
        # a speech seq2seq model (Whisper) is fed its decoder start token: its outputs are the logits
        # of the first token, scored as a classifier's over the vocabulary (never against labels)
        self.first_token = self.family == "causal-lm" and "input_ids" not in loaded.inputs.names
        if self.first_token and config.family == "auto":
            self.family = "classifier"
        elif self.first_token:
            raise TrainingDataError(f"the causal-lm family scores the next tokens of 'input_ids', and the model '{loaded.name}' takes {loaded.inputs.names}", "give --family classifier (its first-token logits) or leave --family auto")
        self.distill_output = DISTILL_OUTPUT[self.family]
        self.name = f"data:{self.data.name}"
        self.model = (loaded.name, {})
        self.pre = Preprocessor(loaded, self.data, config.max_length, pair_as_second_text=self.family == "classifier")
        self.labels = self.family == "classifier" and self.data.label_column is not None and not self.first_token
        self.pairs = self.family == "encoder" and config.pair_column is not None
        if self.pairs:  # an encoder's pairs are scored on evaluation items only; distillation is label-free
            self.data.require_column(config.pair_column, "--pair-column", ("eval",), "recall@1 scores each evaluation text against its pair")
        elif self.family == "classifier" and config.pair_column is not None:
            self.data.require_column(config.pair_column, "--pair-column", ("train", "eval"), "a classifier reads the pair as its second text")
        self.classes = _class_index(loaded.model, self.data) if self.labels else {}
        self.primary = "accuracy" if self.labels else "recall@1" if self.pairs else "cosine" if self.family == "encoder" else "agreement"
        self._eval: list[tuple[tuple, Any]] | None = None
        self._eval_pairs: list[tuple] | None = None
        if self.data.label_column is not None and not self.labels:
            log.info("data '%s': labels are not used by a %s model (distillation and fidelity only)", self.data.name, self.family)

    # ---- data ----------------------------------------------------------------------------------

    @property
    def text_length(self) -> Callable[[dict], int] | None:
        """An item's text length in characters (what training batches are grouped by), or None
        when the inputs are not tokenized text."""
        if self.pre.how != "tokenizer":
            return None
        text, second = self.data.config.text_column, self.config.pair_column if self.family == "classifier" else None
        return lambda item: len(str(item.get(text) or "")) + (len(str(item.get(second) or "")) if second else 0)

    def make_batch(self, items: list[dict], indices: list[int] | None = None) -> tuple[tuple, Any]:
        """``(inputs, labels [B] int64 or None)`` of ``items`` (the source's items ``indices``,
        whose inputs then come from the data cache when it is on)."""
        inputs = self.pre.batch(items, indices)
        if not self.labels:
            return inputs, None

        keys = [_label_key(item.get(self.data.label_column), self.data.reader.path, i) for i, item in enumerate(items)]
        return inputs, torch.tensor([self.classes[k] for k in keys], dtype=torch.int64)

    def train_batches(self, batch_size: int, seed: int = 0):
        return lambda epoch: _Epoch(self, batch_size, seed, epoch)

    def calibration(self, samples: int, batch_size: int = 16) -> list[tuple]:
        """The first ``samples`` training items (never evaluation ones), inputs only."""
        chunk, out, taken = [], [], 0
        for pair in self.data.items("train"):
            if taken >= samples:
                break
            chunk.append(pair)
            taken += 1
            if len(chunk) == batch_size:
                out.append(self.pre.batch(*_split(chunk)))
                chunk = []
        if chunk:
            out.append(self.pre.batch(*_split(chunk)))
        return out

    def _eval_batches(self) -> list[tuple[tuple, Any]]:
        """The held-out items, preprocessed once and kept (at most ``max_eval``)."""
        if self._eval is None:
            pairs = list(self.data.items("eval"))
            items = [item for _, item in pairs]
            size = self.config.eval_batch
            self._eval = [self.make_batch(*_split(pairs[i : i + size])) for i in range(0, len(pairs), size)]
            if self.pairs:
                self._eval_pairs = [self.pre(items[i : i + size], column=self.config.pair_column) for i in range(0, len(items), size)]
        return self._eval

    def task_loss(self, model, batch):
        """Cross-entropy on the labels (classifiers with a label column), else None (distil only)."""
        if not self.labels:
            return None
        inputs, labels = batch
        return F.cross_entropy(_output(model(*inputs)).float(), labels)

    def check_fits(self, model) -> None:
        """One batch through ``model``; the labels must be among its classes.

        Raises:
            TrainingDataError: the data does not fit the model, or a label is outside its classes.
        """
        batch = self.make_batch(*_split([pair for _, pair in zip(range(2), self.data.items("train"))]))
        check_batch_fits(model, batch, self)
        if self.labels:
            with torch.no_grad():
                width = _output(model(*batch[0])).shape[-1]
            outside = sorted((str(k) for k, v in self.classes.items() if v >= width))
            if outside:
                raise TrainingDataError(f"data '{self.data.reader.path}' has {len(self.classes)} label values and the model {width} classes: label(s) {', '.join(outside[:5])} are outside them", "give a model with a class per label (num_labels), or a --label-column of its classes")

    def feature_layers(self, model) -> list[str]:
        """The blocks of the model's main stack (``--features`` matches each block's output to the
        dense model's): the children of its largest ``nn.ModuleList`` by parameters, e.g. a BERT's
        ``encoder.layer.N`` or a Llama's ``model.layers.N``; none when the model has no such stack."""
        return block_stack(model)

    def report(self) -> dict:
        """The data, its split and preprocessing, for run reports."""
        return {**self.data.report(), **self.pre.report(), "family": self.family, "primary": self.primary, "distill_loss": self.distill_output if self.family != "causal-lm" else "token-kl"}

    # ---- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model, reference: EvalResult | None = None) -> EvalResult:
        model.eval()
        batches = self._eval_batches()
        if self.family == "causal-lm":
            return self._evaluate_lm(model, batches, reference)
        if self.family == "encoder":
            return self._evaluate_encoder(model, batches, reference)
        return self._evaluate_classifier(model, batches, reference)

    def _evaluate_classifier(self, model, batches, reference) -> EvalResult:
        logits = torch.cat([_output(model(*inputs)).float().reshape(len(inputs[0]), -1) for inputs, _ in batches]).numpy()
        pred = logits.argmax(1)
        metrics: dict[str, float] = {}
        if reference is not None:
            ref = reference.outputs
            agree = (pred == ref.argmax(1)).astype(np.float64)
            logp_ref = _log_softmax(ref)
            metrics["kl"] = float(np.mean(np.sum(np.exp(logp_ref) * (logp_ref - _log_softmax(logits)), axis=1)))
        else:
            agree = np.ones(len(pred))
            metrics["kl"] = 0.0
        metrics["agreement"] = 100.0 * float(agree.mean())
        with_interval(metrics, "agreement", agree)
        per_item = agree
        if self.labels:
            labels = torch.cat([y for _, y in batches]).numpy()
            per_item = (pred == labels).astype(np.float64)
            metrics["accuracy"] = 100.0 * float(per_item.mean())
            with_interval(metrics, "accuracy", per_item)
            metrics["macro_f1"] = macro_f1(labels, pred)
            if reference is not None:
                with_paired(metrics, "accuracy", reference.per_item, per_item)
        return EvalResult(metrics, per_item, logits)

    def _embed(self, model, batches: list[tuple]) -> np.ndarray:
        names = self.pre.names
        chunks = []
        for inputs in batches:
            out = _output(model(*inputs)).float()
            if out.ndim == 3:  # hidden states: mean over the real tokens
                mask = inputs[names.index("attention_mask")].float() if "attention_mask" in names else torch.ones(out.shape[:2])
                out = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
            chunks.append(out.reshape(len(out), -1))
        return torch.cat(chunks).numpy()

    def _evaluate_encoder(self, model, batches, reference) -> EvalResult:
        emb = self._embed(model, [inputs for inputs, _ in batches])
        if self.pairs:
            emb = np.concatenate([emb, self._embed(model, self._eval_pairs)])
        cos = np.sum(_unit(emb) * _unit(reference.outputs), axis=1) if reference is not None else np.ones(len(emb))
        metrics = {"cosine": 100.0 * float(cos.mean())}
        with_interval(metrics, "cosine", cos)
        per_item = cos
        if self.pairs:
            n = len(emb) // 2
            q, d = _unit(emb[:n]), _unit(emb[n:])
            per_item = (np.argmax(q @ d.T, axis=1) == np.arange(n)).astype(np.float64)
            metrics["recall@1"] = 100.0 * float(per_item.mean())
            with_interval(metrics, "recall@1", per_item)
            if reference is not None:
                with_paired(metrics, "recall@1", reference.per_item, per_item)
        return EvalResult(metrics, per_item, emb)

    def _evaluate_lm(self, model, batches, reference) -> EvalResult:
        names = self.pre.names
        length = max(inputs[0].shape[1] for inputs, _ in batches)
        tops, agree_items, kl_items, nll_sum, tokens = [], [], [], 0.0, 0
        ref_offset = 0
        for inputs, _ in batches:
            ids = inputs[names.index("input_ids")]
            mask = inputs[names.index("attention_mask")].bool() if "attention_mask" in names else torch.ones_like(ids, dtype=torch.bool)
            logp = F.log_softmax(_output(model(*inputs)).float(), dim=-1)  # [B, S, V]
            nll = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
            valid = mask[:, 1:] & mask[:, :-1]
            nll_sum += float(nll[valid].sum())
            tokens += int(valid.sum())
            top_logp, top_idx = logp.topk(min(TOP_K, logp.shape[-1]), dim=-1)
            packed = torch.cat([top_logp, top_idx.float()], dim=-1)
            tops.append(F.pad(packed, (0, 0, 0, length - packed.shape[1])).numpy())
            real = mask.float()
            if reference is not None:
                ref = torch.from_numpy(reference.outputs[ref_offset : ref_offset + len(ids), : ids.shape[1]])
                k = ref.shape[-1] // 2
                ref_logp, ref_idx = ref[..., :k], ref[..., k:].long()
                agree = (logp.argmax(-1) == ref_idx[..., 0]).float()
                p = ref_logp.exp()
                q = logp.gather(-1, ref_idx)
                rest_p = (1 - p.sum(-1)).clamp_min(1e-12)
                rest_q = (1 - q.exp().sum(-1)).clamp_min(1e-12)
                kl = (p * (ref_logp - q)).sum(-1) + rest_p * (rest_p.log() - rest_q.log())
            else:
                agree, kl = torch.ones_like(real), torch.zeros_like(real)
            count = real.sum(1).clamp_min(1.0)
            agree_items.append(((agree * real).sum(1) / count).numpy())
            kl_items.append(((kl * real).sum(1) / count).numpy())
            ref_offset += len(ids)
        agree_items, kl_items = np.concatenate(agree_items), np.concatenate(kl_items)
        perplexity = math.exp(nll_sum / max(tokens, 1))
        metrics = {"agreement": 100.0 * float(agree_items.mean()), "kl": float(kl_items.mean()), "perplexity": perplexity}
        with_interval(metrics, "agreement", agree_items)
        with_interval(metrics, "kl", kl_items, scale=1.0)
        metrics["ppl_ratio"] = perplexity / reference.metrics["perplexity"] if reference is not None and reference.metrics.get("perplexity") else 1.0
        return EvalResult(metrics, agree_items, np.concatenate(tops))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _class_index(model, data: UserData) -> dict:
    """Raw label value -> class index: the model's own ``label2id`` when its names cover the
    labels (Hugging Face classifiers), integers as they are, else the sorted values' positions
    (an image folder: its sorted subfolder names)."""
    values = data.label_values
    names = data.reader.classes
    label2id = getattr(getattr(model, "config", None), "label2id", None) or {}
    named = {str(k): int(v) for k, v in label2id.items() if not str(k).startswith("LABEL_")}
    if names is not None:
        if named and all(n in named for n in names):
            return {i: named[n] for i, n in enumerate(names)}
        return {i: i for i in range(len(names))}
    if named and all(str(v) in named for v in values):
        return {v: named[str(v)] for v in values}
    if all(isinstance(v, int) for v in values):
        if any(v < 0 for v in values):
            raise TrainingDataError(f"data '{data.reader.path}' has negative labels ({min(values)})", "give class indices from 0, or class names")
        if max(values) >= 1 << 63:
            raise TrainingDataError(f"data '{data.reader.path}' has a label of {len(str(max(values)))} digits, too large to be a class index", "give class indices from 0, or class names")
        return {v: v for v in values}
    return {v: i for i, v in enumerate(values)}


def block_stack(model) -> list[str]:
    """Module paths of the children of ``model``'s largest ``nn.ModuleList`` by parameter count
    (every child holding parameters), in order; [] when there is none."""
    best, best_params = [], 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            params = sum(p.numel() for p in module.parameters())
            if params > best_params and all(any(True for _ in child.parameters()) for child in module):
                best, best_params = [f"{name}.{i}" if name else str(i) for i in range(len(module))], params
    return best


def make_data_task(loaded, config: DataConfig) -> DataTask:
    """The data task of ``config`` for ``loaded``, checked to fit it (one batch, label range).

    Raises:
        TrainingDataError: bad data (one line).
        MissingDependencyError: a reader's optional package is missing.
    """
    task = DataTask(loaded, config)
    task.check_fits(loaded.model)
    return task
