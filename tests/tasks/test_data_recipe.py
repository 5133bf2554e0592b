"""A recipe's data: section: an hf:DIR text classifier and a labelled CSV through sparsify (SparseGPT
calibrated on the data) -> distill -> INT8 QAT -> export -> check, and the summary says what 2:4
cost and what recovery won."""

from __future__ import annotations

import csv
import json

import pytest

from sparsekit.errors import RecipeError
from sparsekit.recipe.schema import recipe_from_dict
from tests.data_sources import files


def _bert_classifier(folder, text_file):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(text_file)], trainers.WordLevelTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_hf_classifier_and_labelled_csv_through_a_recipe(tmp_path):
    from sparsekit.recipe.runner import run_recipe

    pairs = files.docstring_pairs(120)
    table = tmp_path / "train.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for q, _ in pairs:
            w.writerow([q, int(q.lower().startswith("return"))])
    model = _bert_classifier(tmp_path / "bert", files.docstrings_text(tmp_path / "t.txt", 120))
    recipe = recipe_from_dict({
        "name": "own-data", "model": {"source": "hf:bert", "seq_len": 32},
        "data": {"source": "train.csv", "label_column": "label"},
        "sparsify": {"method": "sparsegpt", "calib_samples": 32},
        "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 32, "quantize": "int8", "calib_samples": 32},
        "export": {"precisions": ["int8"]},
    }, base=tmp_path)
    assert recipe.data.source == str(table) and recipe.model.source == f"hf:{model}"
    result = run_recipe(recipe, tmp_path / "run")
    assert {r.name for r in result.stages} >= {"sparsify", "finetune", "export.int8", "report"}
    tune = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert tune["primary"] == "accuracy" and tune["data"]["kind"] == "csv" and tune["data"]["label_column"] == "label"
    assert {"accuracy_low", "accuracy_high", "accuracy_vs_dense"} <= set(tune["metrics"]) and tune["masks_2to4"]
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "2:4 cost" in summary and "recovery won" in summary
    report = json.loads((tmp_path / "run" / "model.int8.report.json").read_text())
    assert report["check"]["passed"] and report["sparsified"]
    again = run_recipe(recipe, tmp_path / "run")  # nothing changed: nothing runs again
    assert all(r.status == "skipped" for r in again.stages), [(r.name, r.status) for r in again.stages]


@pytest.mark.parametrize("data, problem", [
    ({"task": "digits", "data": {"source": "x.csv"}}, "brings its own data"),
    ({"finetune": {}}, "need a 'task'"),
    ({"data": {"text_column": "text"}, "finetune": {}}, "needs a 'source'"),
])
def test_recipe_data_section_is_checked(data, problem):
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({"model": {"source": "mlp"}, **data})
    assert problem in str(e.value)
