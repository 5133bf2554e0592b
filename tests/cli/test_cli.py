"""The CLI as a user runs it: the installed console script, real files, exit codes, one-line errors."""

import json
import os

import pytest
import torch

from tests.conftest import DATA

USER = DATA / "user_model.py"


def one_line_error(proc, code=2, match=""):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("sparsekit: error:"), proc.stderr
    assert match in lines[0]
    return lines[0]


def test_help_explains_every_command(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("analyze", "sparsify", "check", "export", "run", "demo", "models"):
        assert cmd in proc.stdout
    assert "exit status 3" in " ".join(cli("check", "--help").stdout.split()).lower()


def test_demo_end_to_end(cli, tmp_path):
    proc = cli("demo", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert "Amdahl bound" in proc.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    conv = next(layer for layer in summary["layers"] if layer["name"] == "stages.0.conv1.0")
    assert conv["status"] == "sparsified" and "(r, s, c)" in conv["reason"]  # 3x3 conv: SparseGPT in TensorRT's layout
    assert summary["sparsified_layers"] >= 6
    assert all(e["check_passed"] and e["parity"]["passed"] for e in summary["exports"].values())
    for p in ("fp32", "fp16", "int8"):
        assert (tmp_path / "demo" / f"model.{p}.onnx").is_file()
    again = cli("demo", "--out", str(tmp_path / "demo"), "--json")
    stages = json.loads(again.stdout)["stages"]
    assert {s["status"] for s in stages} == {"skipped"}


def test_sparsify_check_export_chain(cli, tmp_path):
    ckpt = tmp_path / "u.pt"
    proc = cli("sparsify", f"{USER}:build", "--model-arg", "width=64", "--method", "sparsegpt", "-o", str(ckpt), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {d["name"]: d["status"] for d in report["layers"]}["conv"] == "sparsified"
    trust = ("--model-source", f"{USER}:build")  # a checkpoint's factory runs only when named
    one_line_error(cli("check", str(ckpt)), code=2, match="--model-source")
    assert cli("check", str(ckpt), *trust).returncode == 0
    proc = cli("export", str(ckpt), *trust, "-o", str(tmp_path / "onnx"), "--precision", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    exports = json.loads(proc.stdout)["exports"]
    assert [e["precision"] for e in exports] == ["fp32", "fp16", "int8"]
    onnx16 = tmp_path / "onnx" / "model.fp16.onnx"
    proc = cli("check", str(onnx16), "--require", "conv", "--require", "proj", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"]
    proc = cli("analyze", str(onnx16), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["summary"]["layers"] == 3


def test_check_fails_with_exit_3_on_dense_required(cli, tmp_path):
    proc = cli("export", "mlp", "-o", str(tmp_path / "d.onnx"), "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    line = one_line_error(cli("check", str(tmp_path / "d.onnx"), "--require-eligible"), code=3)
    assert "not 2:4" in line


def test_analyze_table(cli):
    proc = cli("analyze", "cnn")
    assert proc.returncode == 0
    assert "stem.0.0" in proc.stdout and "Amdahl bound" in proc.stdout


@pytest.mark.parametrize("args, match", [
    (["check", "missing.onnx"], "does not exist"),
    (["analyze", "missing.py:build"], "does not exist"),
    (["analyze", f"{USER}:broken"], "weights not found"),
    (["analyze", f"{USER}:build_without_shapes", "--input-shape", "1x3x8x8"], "rejects inputs"),
    (["sparsify", "mlp", "--model-arg", "hidden=10", "--model-arg", "in_features=6", "-o", "{tmp}/x.pt"], "no layer"),
    (["run", "{tmp}/none.yaml"], "does not exist"),
])
def test_bad_input_gets_one_line(cli, tmp_path, args, match):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    one_line_error(cli(*args), match=match)
    assert not (tmp_path / "x.pt").exists()


def test_corrupt_onnx(cli, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(os.urandom(256))
    one_line_error(cli("check", str(bad)), match="not a readable ONNX")


def test_existing_output_needs_force(cli, tmp_path):
    target = tmp_path / "m.pt"
    target.write_bytes(b"keep me")
    one_line_error(cli("sparsify", "mlp", "-o", str(target)), match="--force")
    assert target.read_bytes() == b"keep me"
    assert cli("sparsify", "mlp", "-o", str(target), "--force").returncode == 0
    assert target.read_bytes() != b"keep me"


def test_unwritable_folder(cli, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/sparsekit-test/x.pt"  # not creatable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "x.pt")
    one_line_error(cli("sparsify", "mlp", "-o", target), match="")


def test_wrong_calibration_shape(cli, tmp_path):
    torch.save(torch.randn(8, 3, 32, 32), tmp_path / "calib.pt")
    one_line_error(cli("sparsify", f"{USER}:build", "--method", "sparsegpt", "--calib", str(tmp_path / "calib.pt"), "-o", str(tmp_path / "x.pt")), match="sample shape")
    assert not (tmp_path / "x.pt").exists()


def test_debug_shows_traceback(cli_subprocess):
    proc = cli_subprocess("--debug", "check", "missing.onnx")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_an_error_repeating_a_string_from_input_stays_one_line(cli):
    """A newline or terminal escape in a name (from a file or argv) is escaped, never printed raw."""
    line = one_line_error(cli("analyze", "mlp\nsparsekit error forged\x1b[2J"), code=2, match="is not a built-in model")
    assert "\\n" in line and "\\x1b" in line and "\x1b" not in line


def test_a_failing_training_run_is_one_line_on_a_non_terminal(cli, tmp_path):
    """The progress bar draws nothing when stderr is not a terminal, so an error that stops training
    (here an image that cannot be decoded, met by the training loop) stays the only line."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("0", "1"):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for i in range(24):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "images" / "1" / "broken.png").write_bytes(b"")
    proc = cli("finetune", "cnn", "--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--model-arg", "width=16", "--data", str(tmp_path / "images"),
               "-o", str(tmp_path / "o.pt"), "--epochs", "1", "--batch-size", "16")
    one_line_error(proc, code=2, match="cannot be decoded")
