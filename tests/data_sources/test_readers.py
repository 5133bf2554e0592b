"""Data sources read as data: each format, the deterministic split, and one line for each kind of bad data."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from sparsekit.data.config import DataConfig
from sparsekit.data.readers import open_reader
from sparsekit.data.source import UserData, is_eval
from sparsekit.errors import MissingDependencyError, SparsekitError, TrainingDataError, UnsafeCheckpointError
from tests.data_sources import files


def _one_line(exc: SparsekitError, *words: str) -> str:
    text = str(exc)
    assert "\n" not in text and "(fix:" in text, text
    for w in words:
        assert w in text, text
    return text


def test_text_file_streams_lines_and_skips_blanks(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first\n\n  second  \nthird\n")
    reader = open_reader(str(path))
    items = reader.items()
    assert next(items) == {"text": "first"}  # a generator: nothing read ahead
    assert [i["text"] for i in items] == ["second", "third"]


def test_jsonl_csv_and_columns(tmp_path):
    j = files.docstrings_jsonl(tmp_path / "d.jsonl", 10)
    c = files.digits_csv(tmp_path / "d.csv", 10)
    assert open_reader(str(j)).columns == ["text", "document"]
    rows = list(open_reader(str(c)).items())
    assert len(rows) == 10 and set(rows[0]) == {"input", "label"} and len(rows[0]["input"].split()) == 64


def test_parquet_rows_and_columns(tmp_path):
    pytest.importorskip("pyarrow")
    p = files.digits_parquet(tmp_path / "d.parquet", 50)
    reader = open_reader(str(p))
    rows = list(reader.items())
    assert reader.columns == ["input", "label"] and len(rows) == 50 and len(rows[3]["input"]) == 64


def test_image_folder_labels_are_sorted_subfolders(tmp_path):
    root = files.digits_image_folder(tmp_path / "img", 40)
    reader = open_reader(str(root))
    assert reader.classes == [str(d) for d in range(10)]
    items = list(reader.items())
    assert len(items) == 40 and all(root.joinpath(reader.classes[i["label"]]) == type(root)(i["image"]).parent for i in items)


def test_tensor_files_npz_and_pt(tmp_path):
    import torch

    np.savez(tmp_path / "x.npz", input=np.zeros((5, 1, 8, 8), np.float32), label=np.arange(5))
    torch.save({"input": torch.zeros(5, 3), "label": torch.arange(5)}, tmp_path / "x.pt")
    for name in ("x.npz", "x.pt"):
        reader = open_reader(str(tmp_path / name))
        assert sorted(reader.columns) == ["input", "label"] and len(list(reader.items())) == 5


def test_a_pt_data_file_that_names_code_is_refused_unread(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"input": Boom()}))
    with pytest.raises(UnsafeCheckpointError) as e:
        open_reader(str(path))
    _one_line(e.value, "evil.pt", "never run")


def test_datasets_folder_without_the_package_is_one_line(tmp_path):
    try:
        import datasets  # noqa: F401
        pytest.skip("datasets is installed")
    except ImportError:
        pass
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset_info.json").write_text("{}")
    with pytest.raises(MissingDependencyError) as e:
        open_reader(str(tmp_path / "ds"))
    _one_line(e.value, "datasets")


def test_split_is_deterministic_disjoint_and_recorded(tmp_path):
    c = files.digits_csv(tmp_path / "d.csv", 200)
    a, b = UserData(DataConfig(source=str(c))), UserData(DataConfig(source=str(c)))
    train = [i for i, _ in a.items("train")]
    held = [i for i, _ in a.items("eval")]
    assert held == [i for i, _ in b.items("eval")] and not set(train) & set(held) and len(train) + len(held) == 200
    assert 20 <= len(held) <= 60  # eval_fraction 0.2 of 200
    other = [i for i, _ in UserData(DataConfig(source=str(c), split_seed=1)).items("eval")]
    assert other != held
    report = a.report()
    assert report["eval"] == len(held) and report["split_seed"] == 0 and report["eval_fraction"] == 0.2 and len(report["sha256"]) == 64
    assert [is_eval(i, 0, 0.2) for i in range(5)] == [is_eval(i, 0, 0.2) for i in range(5)]


@pytest.mark.parametrize("case", ["missing_label_column", "missing_pair_column", "empty", "no_eval", "bad_json", "missing_file"])
def test_bad_data_is_one_line(tmp_path, case):
    c = files.digits_csv(tmp_path / "d.csv", 20)
    config = {
        "missing_label_column": dict(source=str(c), label_column="class"),
        "missing_pair_column": dict(source=str(c), pair_column="document"),
        "no_eval": dict(source=str(c), eval_fraction=0.001),
    }.get(case)
    if case == "empty":
        (tmp_path / "e.txt").write_text("")
        config = dict(source=str(tmp_path / "e.txt"))
    if case == "bad_json":
        (tmp_path / "b.jsonl").write_text('{"text": "a"}\n[1, 2]\n')
        config = dict(source=str(tmp_path / "b.jsonl"))
    if case == "missing_file":
        config = dict(source=str(tmp_path / "nope.csv"))
    with pytest.raises(TrainingDataError) as e:
        UserData(DataConfig(**config))
    words = {"missing_label_column": ["no column 'class'", "its columns: input, label"], "missing_pair_column": ["no column 'document'"], "empty": ["is empty"],
             "no_eval": ["no evaluation items", "--eval-fraction"], "bad_json": ["line 2", "not an object"], "missing_file": ["does not exist"]}[case]
    _one_line(e.value, *words)


def test_jsonl_missing_text_column_names_the_columns(tmp_path):
    from sparsekit.models.source import load_model
    from sparsekit.tasks.data_task import DataTask

    j = tmp_path / "d.jsonl"
    j.write_text("".join(json.dumps({"sentence": f"s {i}", "label": i % 2}) + "\n" for i in range(20)))
    with pytest.raises(TrainingDataError) as e:
        DataTask(load_model("mlp"), DataConfig(source=str(j)))
    _one_line(e.value, "no column", "its columns: sentence, label")


def _split_rows(n: int = 30) -> list[dict]:
    """Rows whose split column says where each goes: every third eval-like (eval, validation,
    test, also in other cases and with spaces); eval rows carry a document, train rows text only."""
    marks = ["eval", " Validation", "TEST"]
    rows = []
    for i in range(n):
        if i % 3 == 1:
            rows.append({"text": f"query {i}", "document": f"doc {i}", "split": marks[(i // 3) % 3]})
        else:
            rows.append({"split": "train", "text": f"paragraph {i}"})
    return rows


def test_a_split_column_decides_each_items_split_and_is_recorded(tmp_path):
    rows = _split_rows()
    j = tmp_path / "d.jsonl"
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = tmp_path / "d.csv"
    c.write_text("text,split\n" + "".join(f"{r['text']},{r['split']}\n" for r in rows))
    want_eval = [i for i in range(len(rows)) if i % 3 == 1]
    for path in (j, c):
        data = UserData(DataConfig(source=str(path), split_column="split", eval_fraction=0.9, pair_column="document" if path == j else None))
        assert [i for i, _ in data.items("eval")] == want_eval  # eval_fraction 0.9 is not used
        assert [i for i, _ in data.items("train")] == [i for i in range(len(rows)) if i % 3 != 1]
        report = data.report()
        assert report["split_column"] == "split" and report["eval_fraction"] is None and "column 'split'" in report["split_rule"]
        assert (report["train"], report["eval"]) == (20, 10)
    assert UserData(DataConfig(source=str(j), split_column="split", pair_column="document")).split_columns == {"train": ["split", "text"], "eval": ["split", "text", "document"]}
    hashed = UserData(DataConfig(source=str(c)))
    assert [i for i, _ in hashed.items("eval")] == [i for i in range(len(rows)) if is_eval(i, 0, 0.2)] != want_eval  # without it: the hash split


@pytest.mark.parametrize("case", ["bad_value", "missing_value", "no_column", "no_eval", "pair_nowhere"])
def test_a_bad_split_column_is_one_line(tmp_path, case):
    rows = _split_rows(12)
    column, pair = "split", None
    if case == "bad_value":
        rows[4]["split"] = "dev"
    if case == "missing_value":
        del rows[7]["split"]
    if case == "no_column":
        column = "fold"
    if case == "no_eval":
        rows = [{**r, "split": "train"} for r in rows]
    if case == "pair_nowhere":
        pair = "answer"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TrainingDataError) as e:
        UserData(DataConfig(source=str(path), split_column=column, pair_column=pair))
    words = {"bad_value": ["'dev'", "'train'", "'eval'", "item 4", "accepted: train, eval, validation, test", "--eval-fraction"],
             "missing_value": ["None", "item 7", "accepted: train, eval"], "no_column": ["no column 'fold'", "--split-column"],
             "no_eval": ["no evaluation items", "column 'split'"], "pair_nowhere": ["no column 'answer'", "--pair-column"]}[case]
    _one_line(e.value, *words)


def test_a_column_one_split_needs_is_required_of_that_split_only(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _split_rows(12)))
    data = UserData(DataConfig(source=str(path), split_column="split", pair_column="document"))
    data.require_column("document", "--pair-column", ("eval",), "recall@1 needs it")  # every eval row has one
    with pytest.raises(TrainingDataError) as e:
        data.require_column("document", "--pair-column", ("train", "eval"), "a classifier reads the pair as its second text")
    _one_line(e.value, "not every train item has column 'document'", "every train item has: split, text", "--pair-column")
