"""The task over your own data: digits files through the zoo CNN (SparseGPT calibrated on them,
distilled, INT8 QAT, exported, checked), a tiny Llama on a text file, a tiny ViT on an image
folder, an encoder on JSONL pairs, your own task and preprocess function, and bad data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sparsekit.data.config import DataConfig
from sparsekit.errors import TrainingDataError, UntrustedSourceError
from sparsekit.models.source import load_model
from sparsekit.tasks.data_task import DataTask, make_data_task, model_family
from tests.data_sources import files


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    out = {"images": files.digits_image_folder(root / "images", 300), "csv": files.digits_csv(root / "d.csv", 300)}
    try:
        out["parquet"] = files.digits_parquet(root / "d.parquet", 300)
    except ImportError:
        pass
    return out


def _zoo_cnn():
    return load_model(*files.DIGITS_MODEL)


def test_digits_files_give_the_same_kind_of_task(digits_files):
    loaded = _zoo_cnn()
    for kind, path in digits_files.items():
        task = make_data_task(loaded, DataConfig(source=str(path)))
        assert task.family == "classifier" and task.primary == "accuracy" and task.distill_output == "logits", kind
        result = task.evaluate(loaded.model)
        assert {"accuracy", "accuracy_low", "accuracy_high", "macro_f1", "agreement", "kl"} <= set(result.metrics), kind
        assert result.metrics["accuracy_low"] <= result.metrics["accuracy"] <= result.metrics["accuracy_high"]
        batch = task.train_batches(32)(0)[0]
        assert batch[0][0].shape == (32, 1, 8, 8) and batch[1].dtype.is_floating_point is False


def test_digits_csv_to_onnx_through_the_command_line(digits_files, tmp_path, cli):
    """Dense training on labels, SparseGPT calibrated on the image folder, distillation + INT8 QAT on the
    CSV, INT8 export calibrated on the data, check: as a user runs it."""
    model = ["cnn", "--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--model-arg", "width=16"]
    dense, sparse, tuned, onnx = (tmp_path / n for n in ("dense.pt", "sparse.pt", "tuned.pt", "m.onnx"))
    r = cli("finetune", *model, "--data", str(digits_files["csv"]), "--epochs", "8", "--batch-size", "64", "--lr", "5e-3", "-o", str(dense), "--json")
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["after"]["accuracy"] > 80 and trained["data"]["kind"] == "csv" and trained["data"]["eval"] > 0
    r = cli("sparsify", str(dense), "--method", "sparsegpt", "--data", str(digits_files["images"]), "--calib-samples", "32", "-o", str(sparse), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["sparsified"]) >= 8
    r = cli("finetune", str(sparse), "--teacher", str(dense), "--data", str(digits_files.get("parquet", digits_files["csv"])), "--quantize", "int8", "--calib-samples", "32", "--epochs", "1", "--batch-size", "64", "--lr", "1e-3", "-o", str(tuned), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["distilled"] and done["masks_2to4"] and done["quantize"] == "int8"
    for when in ("before", "after"):  # before: as loaded; both with intervals and the paired difference to dense
        assert {"accuracy", "accuracy_low", "accuracy_high", "accuracy_vs_dense", "accuracy_vs_dense_low", "agreement", "kl"} <= set(done[when])
    assert done["after"]["accuracy"] > 30  # well above the 10% of chance after one QAT epoch of 3 steps
    r = cli("export", str(tuned), "--precision", "int8", "--data", str(digits_files["csv"]), "-o", str(onnx))
    assert r.returncode == 0, r.stderr
    r = cli("check", str(onnx))
    assert r.returncode == 0, r.stderr


def test_labels_outside_the_models_classes_are_one_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("input,label\n" + "".join(" ".join(["0.5"] * 64) + f",{i % 12}\n" for i in range(60)))
    with pytest.raises(TrainingDataError) as e:
        make_data_task(_zoo_cnn(), DataConfig(source=str(path)))
    assert "outside" in str(e.value) and "10 classes" in str(e.value) and "\n" not in str(e.value)


def test_an_undecodable_image_is_one_line(digits_files, tmp_path):
    import shutil

    root = tmp_path / "img"
    shutil.copytree(digits_files["images"], root)
    (root / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    task = DataTask(_zoo_cnn(), DataConfig(source=str(root), eval_fraction=0.5))
    with pytest.raises(TrainingDataError) as e:
        list(task.train_batches(64)(0))
        task.evaluate(_zoo_cnn().model)
    assert "broken.png" in str(e.value) and "cannot be decoded" in str(e.value)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    text = files.docstrings_text(root / "docs.txt", 160)
    return files.tiny_llama(root / "model", text), text


def test_llama_distillation_lowers_the_kl_below_the_one_shot_students(llama):
    from sparsekit.recover.config import FinetuneConfig
    from sparsekit.recover.task_finetune import finetune_stage_
    from sparsekit.sparsify.config import SparsifyConfig
    from sparsekit.sparsify.sparsify import sparsify_loaded_

    folder, text = llama
    loaded = load_model(f"hf:{folder}")
    assert model_family(loaded.model) == "causal-lm"
    task = make_data_task(loaded, DataConfig(source=str(text), max_length=24))
    teacher = copy.deepcopy(loaded.model)
    dense = task.evaluate(teacher)
    sparsify_loaded_(loaded, SparsifyConfig(method="sparsegpt").with_batches(task.calibration(64, 16)))
    one_shot = task.evaluate(loaded.model, dense)
    result = finetune_stage_(loaded, task, FinetuneConfig(epochs=2, lr=3e-3, batch_size=16), teacher)
    assert result.after["kl"] < one_shot.metrics["kl"], (one_shot.metrics, result.after)
    assert result.after["kl_high"] < one_shot.metrics["kl"]  # by more than its interval
    assert {"perplexity", "ppl_ratio", "agreement_low", "agreement_high"} <= set(result.after)
    report = task.report()
    assert report["truncated"] > 0 and report["max_length"] == 24  # long texts are cut and counted, not refused


@pytest.fixture(scope="module")
def vit(tmp_path_factory, digits_files):
    return files.tiny_vit(tmp_path_factory.mktemp("vit") / "model")


def test_vit_on_an_image_folder_reports_accuracy_and_agreement_with_intervals(vit, digits_files):
    from sparsekit.sparsify.config import SparsifyConfig
    from sparsekit.sparsify.sparsify import sparsify_loaded_

    loaded = load_model(f"hf:{vit}")
    task = make_data_task(loaded, DataConfig(source=str(digits_files["images"])))
    assert task.report()["preprocess"] == "image-processor"
    dense = task.evaluate(loaded.model)
    assert dense.metrics["accuracy"] > 30  # trained a little: well above the 10% of chance
    sparsify_loaded_(loaded, SparsifyConfig(method="sparsegpt").with_batches(task.calibration(64, 16)))
    sparse = task.evaluate(loaded.model, dense).metrics
    for name in ("accuracy", "agreement"):
        assert sparse[f"{name}_low"] <= sparse[name] <= sparse[f"{name}_high"]
    assert sparse["accuracy_vs_dense_low"] <= sparse["accuracy_vs_dense"] <= sparse["accuracy_vs_dense_high"]
    assert sparse["agreement"] < 100 or sparse["kl"] > 0  # the sparse model is measured against the dense one


def _tiny_bert(folder: Path, text: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
    import torch

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(text)], trainers.WordLevelTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_encoder_on_jsonl_pairs_reports_recall_and_cosine_and_distils(tmp_path):
    from sparsekit.recover.config import FinetuneConfig
    from sparsekit.recover.task_finetune import finetune_stage_
    from sparsekit.sparsify.sparsify import sparsify_loaded_
    from sparsekit.sparsify.config import SparsifyConfig

    pairs = files.docstrings_jsonl(tmp_path / "pairs.jsonl", 100)
    folder = _tiny_bert(tmp_path / "bert", files.docstrings_text(tmp_path / "t.txt", 100))
    loaded = load_model(f"hf:{folder}")
    task = make_data_task(loaded, DataConfig(source=str(pairs), pair_column="document", max_length=32))
    assert task.family == "encoder" and task.primary == "recall@1" and task.distill_output == "cosine"
    teacher = copy.deepcopy(loaded.model)
    dense = task.evaluate(teacher)
    assert dense.metrics["cosine"] == pytest.approx(100.0)
    sparsify_loaded_(loaded, SparsifyConfig(method="sparsegpt").with_batches(task.calibration(32, 16)))
    result = finetune_stage_(loaded, task, FinetuneConfig(epochs=1, lr=1e-4, batch_size=16), teacher)
    assert result.before["cosine"] < 100 and result.after["cosine"] > 99  # a random encoder: distillation keeps it close
    assert {"recall@1", "recall@1_low", "recall@1_vs_dense"} <= set(result.after)


def test_an_encoder_trains_on_text_only_rows_and_scores_pairs_on_eval_rows_of_a_split_column(tmp_path):
    from sparsekit.recover.config import FinetuneConfig
    from sparsekit.recover.task_finetune import finetune_stage_

    pairs = files.docstring_pairs(80)
    rows = [{"split": "eval", "text": q, "document": d} for q, d in pairs[:40]] + [{"split": "train", "text": f"{q} {d}"} for q, d in pairs[40:]]
    path = tmp_path / "split.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # the first row is a train row: no document
    folder = _tiny_bert(tmp_path / "bert", files.docstrings_text(tmp_path / "t.txt", 80))
    loaded = load_model(f"hf:{folder}")
    task = make_data_task(loaded, DataConfig(source=str(path), split_column="split", pair_column="document", max_length=32))
    assert task.primary == "recall@1" and task.report()["split_column"] == "split" and (task.data.counts["train"], task.data.counts["eval"]) == (40, 40)
    assert all("document" not in item for _, item in task.data.items("train"))
    teacher = copy.deepcopy(loaded.model)
    dense = task.evaluate(teacher)
    assert len(dense.per_item) == 40 and 0 < dense.metrics["recall@1"] <= 100
    result = finetune_stage_(loaded, task, FinetuneConfig(epochs=1, lr=1e-4, batch_size=16), teacher)
    assert result.report.steps == 3 and "recall@1_vs_dense" in result.after  # 40 text-only training rows at batch 16

    rows[3] = {"split": "eval", "text": "a query without its document"}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainingDataError) as e:
        DataTask(loaded, DataConfig(source=str(path), split_column="split", pair_column="document", max_length=32))
    assert "\n" not in str(e.value) and "not every eval item has column 'document'" in str(e.value) and "--pair-column" in str(e.value)


def test_your_own_task_and_preprocess_run_only_when_named(tmp_path, digits_files):
    from sparsekit.models.trust import trust_sources
    from sparsekit.tasks import user_task

    code = tmp_path / "mine.py"
    code.write_text(
        "import torch\n"
        "from sparsekit.tasks.data_task import DataTask\n"
        "def preprocess(items, names):\n"
        "    return {names[0]: torch.tensor([[float(v) for v in it['input'].split()] for it in items]).reshape(-1, 1, 8, 8)}\n"
        "def make_task(data):\n"
        "    from sparsekit.data.config import DataConfig\n"
        "    from sparsekit.models.source import load_model\n"
        "    return DataTask(load_model('cnn', {'in_channels': 1, 'image_size': 8, 'width': 32}), DataConfig(source=data))\n"
    )
    with pytest.raises(UntrustedSourceError):
        user_task(f"{code}:make_task", data=str(digits_files["csv"]))
    with pytest.raises(UntrustedSourceError):
        DataTask(_zoo_cnn(), DataConfig(source=str(digits_files["csv"]), preprocess=f"{code}:preprocess"))
    with trust_sources(f"{code}:make_task", f"{code}:preprocess"):
        task = user_task(f"{code}:make_task", data=str(digits_files["csv"]))
        assert task.primary == "accuracy"
        mine = DataTask(_zoo_cnn(), DataConfig(source=str(digits_files["csv"]), preprocess=f"{code}:preprocess"))
        assert mine.report()["preprocess"] == "user" and mine.train_batches(16)(0)[0][0][0].shape == (16, 1, 8, 8)


def test_the_command_line_names_task_and_preprocess_code_as_trusted():
    import argparse

    from sparsekit.cli.common import named_sources

    args = argparse.Namespace(model="hf:x", task="t.py:make_task", preprocess="p.py:prep", model_source=[])
    assert {"t.py:make_task", "p.py:prep"} <= set(named_sources(args))


def test_bad_data_on_the_command_line_is_one_line(tmp_path, cli):
    path = tmp_path / "d.csv"
    path.write_text("input,label\n" + "".join(" ".join(["0.5"] * 64) + f",{i % 10}\n" for i in range(30)))
    r = cli("finetune", "cnn", "--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--data", str(path), "--label-column", "digit", "-o", str(tmp_path / "x.pt"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no column 'digit'" in lines[0] and "input, label" in lines[0]
    assert not (tmp_path / "x.pt").exists()


def test_a_bad_split_value_on_the_command_line_is_one_line(tmp_path, cli):
    path = tmp_path / "d.csv"
    path.write_text("input,label,split\n" + "".join(" ".join(["0.5"] * 64) + f",{i % 10},{['train', 'eval', 'dev'][i % 3]}\n" for i in range(30)))
    r = cli("finetune", "cnn", "--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--data", str(path), "--split-column", "split", "-o", str(tmp_path / "x.pt"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "'dev'" in lines[0] and "accepted: train, eval, validation, test" in lines[0] and not (tmp_path / "x.pt").exists()


def test_feature_distillation_on_your_data_matches_the_blocks_of_the_main_stack(tmp_path):
    from sparsekit.recover.config import FinetuneConfig
    from sparsekit.recover.task_finetune import finetune_stage_
    from sparsekit.tasks.data_task import block_stack

    pairs = files.docstrings_jsonl(tmp_path / "pairs.jsonl", 60)
    folder = _tiny_bert(tmp_path / "bert", files.docstrings_text(tmp_path / "t.txt", 60))
    loaded = load_model(f"hf:{folder}")
    task = make_data_task(loaded, DataConfig(source=str(pairs), pair_column="document", max_length=32))
    layers = task.feature_layers(loaded.model)
    modules = dict(loaded.model.named_modules())
    assert layers and all(name in modules for name in layers) and all(".layer." in name for name in layers)
    assert block_stack(load_model("mlp").model) == []  # no stack of blocks: --features has nothing to match
    assert block_stack(load_model("bert", {"layers": 3}).model) == ["layers.0", "layers.1", "layers.2"]
    teacher = copy.deepcopy(loaded.model)
    plain = finetune_stage_(copy.deepcopy(loaded), task, FinetuneConfig(epochs=1, lr=1e-3, batch_size=16), teacher)
    with_features = finetune_stage_(loaded, task, FinetuneConfig(epochs=1, lr=1e-3, batch_size=16, features=True), teacher)
    assert with_features.report.steps == plain.report.steps
    assert with_features.report.epoch_loss != plain.report.epoch_loss  # the feature losses are part of what it trained on


def test_text_training_batches_are_grouped_by_length_and_still_cover_every_item_once(tmp_path, digits_files):
    import random

    import torch

    from sparsekit.tasks.data_task import LENGTH_BUCKET, _Epoch

    words = files.docstrings_text(tmp_path / "t.txt", 100).read_text().split()
    rng = random.Random(0)
    rows = [{"split": "train", "text": " ".join(rng.choices(words, k=rng.choice((2, 4, 8, 50))))} for _ in range(LENGTH_BUCKET * 8 + 37)]
    rows += [{"split": "eval", "text": q, "document": d} for q, d in files.docstring_pairs(8)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_model(f"hf:{_tiny_bert(tmp_path / 'bert', tmp_path / 't.txt')}")
    task = make_data_task(loaded, DataConfig(source=str(path), split_column="split", pair_column="document", max_length=60))
    epoch = _Epoch(task, 8, 0, 0)
    groups = [[i for i, _ in g] for g in epoch._groups()]
    assert sorted(i for g in groups for i in g) == sorted(i for i, _ in task.data.items("train")) and len(groups) == len(epoch)
    assert groups == [[i for i, _ in g] for g in _Epoch(task, 8, 0, 0)._groups()], "an epoch's batches are reproducible (resume)"
    assert groups != [[i for i, _ in g] for g in _Epoch(task, 8, 0, 1)._groups()], "epochs differ"

    at = task.pre.names.index("attention_mask")

    def padded(batches) -> int:
        return sum(int(inputs[at].numel() - inputs[at].sum()) for inputs, _ in batches)

    stream = [pair for pair in epoch._items()]
    random_batches = [task.make_batch([item for _, item in stream[i : i + 8]], [j for j, _ in stream[i : i + 8]]) for i in range(0, len(stream), 8)]
    grouped, drawn = padded(list(epoch)), padded(random_batches)
    assert grouped < drawn / 3, (grouped, drawn)
    assert all(isinstance(t, torch.Tensor) for t in list(epoch)[0][0])

    import sparsekit.tasks.data_task as data_task

    held = data_task.SHUFFLE_BUFFER
    try:  # a batch size near the buffer: each sorted run holds at most the buffer's items
        data_task.SHUFFLE_BUFFER = 16
        stream = [i for i, _ in _Epoch(task, 8, 0, 0)._items()]
        runs = [[i for i, _ in g] for g in _Epoch(task, 8, 0, 0)._groups()]
        assert all(set(runs[k] + runs[k + 1]) == set(stream[8 * k : 8 * k + 16]) for k in range(0, len(runs) - 1, 2))
    finally:
        data_task.SHUFFLE_BUFFER = held

    images = make_data_task(_zoo_cnn(), DataConfig(source=str(digits_files["csv"])))
    assert images.text_length is None
    shuffled = [i for i, _ in _Epoch(images, 32, 0, 0)._items()]
    assert [i for g in _Epoch(images, 32, 0, 0)._groups() for i, _ in g] == shuffled, "fixed-size inputs keep the shuffled order"
