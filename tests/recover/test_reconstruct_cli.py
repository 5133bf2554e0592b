"""``finetune --reconstruct-steps``: an hf:DIR encoder's blocks repaired one by one before the
distillation, reported per block; without a teacher or blocks, one line before any work."""

from __future__ import annotations

import json

from tests.data_sources import files
from tests.tasks.test_data_task import _tiny_bert


def test_finetune_reconstructs_every_block_before_distilling(tmp_path, cli):
    text = files.docstrings_text(tmp_path / "t.txt", 64)
    folder = _tiny_bert(tmp_path / "bert", text)
    sparse = tmp_path / "sparse.pt"
    r = cli("sparsify", f"hf:{folder}", "--seq-len", "16", "-o", str(sparse), "--json")
    assert r.returncode == 0, r.stderr
    r = cli("finetune", str(sparse), "--data", str(text), "--max-length", "16", "--epochs", "1", "--batch-size", "16", "--lr", "1e-4",
            "--reconstruct-steps", "30", "--reconstruct-lr", "1e-3", "--reconstruct-samples", "32", "-o", str(tmp_path / "tuned.pt"), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    blocks = done["reconstruction"]["blocks"]
    assert [b["name"] for b in blocks] == [f"encoder.layer.{i}" for i in range(len(blocks))] and blocks
    assert all(b["steps"] == 30 and b["error_after"] < b["error_before"] for b in blocks), blocks
    assert done["masks_2to4"] and done["after"]["cosine"] > done["before"]["cosine"]


def test_reconstruction_without_a_teacher_or_blocks_is_one_line(tmp_path, cli):
    csv = files.digits_csv(tmp_path / "d.csv", 64)
    spec, args = files.DIGITS_MODEL
    model = [x for k, v in args.items() for x in ("--model-arg", f"{k}={v}")]
    sparse = tmp_path / "sparse.pt"
    assert cli("sparsify", spec, *model, "-o", str(sparse)).returncode == 0
    r = cli("finetune", str(sparse), "--data", str(csv), "--epochs", "1", "--reconstruct-steps", "5", "-o", str(tmp_path / "x.pt"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "needs the dense model as teacher" in lines[0] and "--reconstruct-steps" in lines[0]
    r = cli("finetune", str(sparse), "--data", str(csv), "--teacher", f"{spec}", *model, "--epochs", "1", "--reconstruct-steps", "5", "-o", str(tmp_path / "x.pt"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "no blocks" in lines[0], r.stderr
    assert not (tmp_path / "x.pt").exists()
