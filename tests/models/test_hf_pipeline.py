"""Hugging Face models with no wrapper code, through the whole chain: hf:DIR and file.py:factory ->
analyze -> sparsify (magnitude, sparsegpt) -> checkpoint -> export fp32/fp16/int8 -> 2:4 check
(agreeing with Polygraphy) -> ONNX Runtime parity at two batch sizes and two sequence lengths."""

import onnx
import pytest

from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.export.export import export_
from sparsekit.models.calib import load_calibration
from sparsekit.models.checkpoint import save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.sparsify.sparsify import sparsify_
from tests.conftest import DATA
from tests.data import hf_factories
from tests.sparsify.test_check_vs_polygraphy import assert_agree

pytest.importorskip("transformers", reason="Hugging Face models need the 'minilm' extra (transformers)")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")

FACTORY = DATA / "hf_factories.py"
TEXT = {"bert", "gpt2", "minilm"}
OUTPUTS = {"bert": ["logits"], "vit": ["logits"], "gpt2": ["logits"], "minilm": ["last_hidden_state"]}
# hf:DIR of MiniLM builds BertModel with its pooler (two outputs); the factory leaves it out
# (model, source, method): each model goes through both sources, and both methods
CASES = [
    ("bert", "hf", "sparsegpt"), ("bert", "factory", "magnitude"),
    ("vit", "hf", "magnitude"), ("vit", "factory", "sparsegpt"),
    ("gpt2", "hf", "sparsegpt"), ("gpt2", "factory", "magnitude"),
    ("minilm", "hf", "magnitude"), ("minilm", "factory", "sparsegpt"),
]
FACTORY_NAMES = {"bert": "bert_classifier", "vit": "vit_classifier", "gpt2": "gpt2_lm", "minilm": "minilm"}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """save_pretrained folders of the small models (and the MiniLM package's own folder)."""
    from sparsekit.models.zoo_minilm import minilm_dir

    root = tmp_path_factory.mktemp("hf")
    specs = {name: hf_factories.save_folder(name, root / name) for name in hf_factories.FACTORIES}
    specs["minilm"] = f"hf:{minilm_dir()}"
    return specs


def _spec(name: str, source: str, hf_dirs) -> str:
    return hf_dirs[name] if source == "hf" else f"{FACTORY}:{FACTORY_NAMES[name]}"


def _polygraphy_checks(name: str, source: str, precision: str) -> bool:
    """Polygraphy inspects float weights only (int8 ones are stored quantized), and takes ~35 s per
    MiniLM file (a Python loop over 22 M weights): MiniLM is compared once, on its fp16 file."""
    if precision == "int8":
        return False
    return name != "minilm" or (source, precision) == ("hf", "fp16")


@pytest.mark.parametrize("name, source, method", CASES)
def test_chain_without_wrappers(name, source, method, hf_dirs, tmp_path):
    loaded = load_model(_spec(name, source, hf_dirs), seq_len=hf_factories.SEQ if (name in TEXT and source == "hf") else None)
    analysis = analyze_model(loaded)
    calib = load_calibration(None, loaded.inputs, 16) if method == "sparsegpt" else None
    loaded.model, report = sparsify_(loaded.model, method, calib=calib)
    expected = {a.name for a in analysis.layers if a.trt["ok"] and a.magnitude["ok"] and (method == "magnitude" or a.sparsegpt["ok"])}
    assert expected and set(report.sparsified) == expected
    if name == "gpt2":  # the Conv1D projections are the Linear layers they are
        assert {f"transformer.h.{i}.{p}" for i in (0, 1) for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")} <= expected
        assert "lm_head" not in expected  # tied to the token embedding: kept dense
    ckpt = tmp_path / "m.pt"
    save_checkpoint(loaded, ckpt)
    restored = load_model(str(ckpt), model_sources=[_spec(name, source, hf_dirs)])  # inputs, ranges and dynamic axes come from the checkpoint; a factory is named to be trusted
    assert restored.inputs == loaded.inputs
    for precision in ("fp32", "fp16", "int8"):
        result = export_(restored, precision, tmp_path / f"m.{precision}.onnx")
        assert result.check.passed and set(result.sparsified) == expected, precision
        assert result.parity.passed, (precision, result.parity.reason())
        if _polygraphy_checks(name, source, precision):
            verdicts = assert_agree(result.path)  # Polygraphy's verdict on every weight it inspects
            assert sum(verdicts.values()) >= len(expected), precision
        graph = onnx.load(str(result.path), load_external_data=False).graph
        assert [o.name for o in graph.output] == (["last_hidden_state", "pooler_output"] if (name, source) == ("minilm", "hf") else OUTPUTS[name])
        if name in TEXT:
            assert all(i.type.tensor_type.shape.dim[1].dim_param == "sequence" for i in graph.input), precision
            assert len({s["sequence"] for s in result.parity.sizes}) == 2  # parity at two sequence lengths
