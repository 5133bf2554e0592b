"""The default teacher of ``finetune CKPT --data`` without ``--teacher``: the hf:DIR folder the
checkpoint was made from (checked to hold the same config), and none for zoo / factory checkpoints."""

from __future__ import annotations

import json

from tests.data_sources import files
from tests.tasks.test_data_task import _tiny_bert


def _error_lines(r) -> list[str]:
    return [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]


def test_an_hf_checkpoint_distils_from_its_folder_and_refuses_a_changed_one(tmp_path, cli):
    text = files.docstrings_text(tmp_path / "t.txt", 40)
    folder = _tiny_bert(tmp_path / "bert", text)
    sparse = tmp_path / "sparse.pt"
    r = cli("sparsify", f"hf:{folder}", "--seq-len", "16", "-o", str(sparse), "--json")
    assert r.returncode == 0, r.stderr
    tune = ["finetune", str(sparse), "--data", str(text), "--max-length", "16", "--epochs", "1", "--batch-size", "16", "--lr", "1e-4"]
    r = cli(*tune, "-o", str(tmp_path / "tuned.pt"), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    said = f"hf:{folder.resolve()} (the dense model the checkpoint was made from)"
    assert done["distilled"] and done["teacher"] == said
    assert [x for x in r.stderr.splitlines() if x.startswith("teacher:")] == [f"teacher: {said}; name another with --teacher"]
    assert done["dense"]["cosine"] == 100.0 and done["before"]["cosine"] < 100.0  # measured against the folder's model

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.3}))
    r = cli(*tune, "-o", str(tmp_path / "changed.pt"))
    (line,) = _error_lines(r)
    assert r.returncode == 2 and "now holds another model" in line and "hidden_dropout_prob" in line and "--teacher" in line
    assert not (tmp_path / "changed.pt").exists()

    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()  # the weights are gone; the tokenizer is still there
    r = cli(*tune, "-o", str(tmp_path / "gone.pt"))
    (line,) = _error_lines(r)
    assert r.returncode == 2 and "cannot be loaded as the teacher" in line and "no weights" in line and "--teacher" in line and "Traceback" not in r.stderr


def test_a_zoo_checkpoint_has_no_default_teacher_and_says_why(tmp_path, cli):
    data = tmp_path / "unlabelled.csv"
    data.write_text("input\n" + "".join(" ".join(["0.5"] * 64) + "\n" for _ in range(30)))
    sparse = tmp_path / "sparse.pt"
    model = ["--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--model-arg", "width=16"]
    r = cli("sparsify", "cnn", *model, "-o", str(sparse))
    assert r.returncode == 0, r.stderr
    r = cli("finetune", str(sparse), "--data", str(data), "--epochs", "1", "-o", str(tmp_path / "x.pt"))
    (line,) = _error_lines(r)
    assert r.returncode == 2 and "has no labels to train on" in line
    assert "--teacher" in line and "zoo checkpoint has no default teacher" in line and "untrained" in line
