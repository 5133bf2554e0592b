"""The adapter layer: hf:DIR loading and default inputs, keyword inputs, integer ranges, Conv1D as
Linear, tied weights, in-memory models and their checkpoints, and the checkpoint restore path."""

import json
import logging

import pytest
import torch
from torch import nn

from sparsekit.errors import InputShapeError, ModelSourceError, UntrustedSourceError
from sparsekit.models.calib import load_calibration
from sparsekit.models.checkpoint import save_checkpoint
from sparsekit.models.source import load_model, wrap
from tests.conftest import DATA
from tests.data import hf_factories

pytest.importorskip("transformers", reason="Hugging Face models need the 'minilm' extra (transformers)")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")

FACTORY = DATA / "hf_factories.py"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: hf_factories.save_folder(name, root / name) for name in hf_factories.FACTORIES}


def test_hf_folder_default_inputs_from_the_config(folders):
    bert = load_model(folders["bert"])
    assert bert.inputs.names == ["input_ids", "attention_mask", "token_type_ids"]
    assert [t.shape for t in bert.inputs.tensors] == [(1, 64)] * 3  # --seq-len: 128, or the model's max positions (64)
    assert [(t.low, t.high) for t in bert.inputs.tensors] == [(0, hf_factories.VOCAB), (0, 2), (0, 2)]
    assert all(t.dynamic == ((1, "sequence"),) for t in bert.inputs.tensors)
    assert load_model(folders["bert"], seq_len=24).inputs.tensors[0].shape == (1, 24)
    gpt2 = load_model(folders["gpt2"], seq_len=8)
    assert gpt2.inputs.names == ["input_ids", "attention_mask"]  # GPT-2 has no token types
    vit = load_model(folders["vit"])
    assert [(t.name, t.shape, t.dtype) for t in vit.inputs.tensors] == [("pixel_values", (1, 3, 16, 16), "float32")]
    with pytest.raises(InputShapeError, match="no input .* has one"):
        load_model(folders["vit"], seq_len=8)  # an image model has no sequence axis


def test_hf_folder_errors(folders, tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist"):
        load_model(f"hf:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        load_model(f"hf:{tmp_path / 'empty'}")
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelSourceError, match="no weights"):
        load_model(f"hf:{tmp_path / 'config_only'}")
    with pytest.raises(ModelSourceError, match="not a model class"):
        load_model(folders["bert"], {"architecture": "NoSuchModel"})


def test_weights_missing_from_the_folder_are_reported(folders, caplog):
    with caplog.at_level(logging.WARNING, logger="sparsekit.models.hf"):
        loaded = load_model(folders["bert"], {"architecture": "BertForMaskedLM"}, seq_len=8)
    assert type(loaded.model).__name__ == "BertForMaskedLM"
    assert "not in" in caplog.text and "initialised at random (cls.predictions" in caplog.text


def test_inputs_go_by_keyword_and_a_wrong_name_lists_the_parameters(folders):
    gpt2 = load_model(folders["gpt2"], seq_len=8)  # attention_mask is forward's 3rd parameter (2nd: the cache)
    ids, mask = gpt2.inputs.random(batch=2, seed=3)
    mask[:, :3] = 0
    with torch.no_grad():
        ours = gpt2.model(ids, mask)  # the kit's convention: tensors in input order -> plain tensor
        theirs = gpt2.model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # keyword call: the model's own output
    assert isinstance(ours, torch.Tensor) and torch.equal(ours, theirs)
    with pytest.raises(InputShapeError, match=r"not a parameter of GPT2LMHeadModel.forward \(its parameters: input_ids, cache, attention_mask"):
        load_model(folders["gpt2"], input_shapes=["input_idz:1x8:int64"])


def test_integer_inputs_carry_ranges(folders, tmp_path, caplog):
    bert = load_model(folders["bert"], seq_len=32)
    ids = torch.cat([b[0] for b in load_calibration(None, bert.inputs, 32)])
    assert ids.max() < hf_factories.VOCAB and len(ids.unique()) > 20  # ids over the vocabulary, not {0, 1}
    # a declared range wins; a declared input without one gets the config's
    ranged = load_model(folders["bert"], input_shapes=["input_ids:1x8:int64:5..9", "attention_mask:1x8:int64", "token_type_ids:1x8:int64"])
    assert (ranged.inputs.tensors[0].low, ranged.inputs.tensors[0].high) == (5, 9)
    assert ranged.inputs.tensors[1].high == 2 and ranged.inputs.tensors[2].high == 2
    (tmp_path / "emb.py").write_text(
        "import torch\n"
        "class Emb(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.e = torch.nn.Embedding(50, 16); self.out = torch.nn.Linear(16, 16)\n"
        "    def forward(self, ids):\n        return self.out(self.e(ids))\n"
        "def build():\n    return Emb(), ['ids:1x8:int64']\n"
    )
    with caplog.at_level(logging.WARNING, logger="sparsekit.input_spec"):
        load_model(f"{tmp_path / 'emb.py'}:build")
    assert "integer input 'ids'" in caplog.text and "no value range" in caplog.text


def test_conv1d_runs_as_the_equal_linear(folders):
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(folders["gpt2"][3:]).eval()
    loaded = load_model(folders["gpt2"], seq_len=8)
    assert type(loaded.model.transformer.h[0].attn.c_attn) is nn.Linear
    assert "8 transformers Conv1D layers" in loaded.notes[0]
    ids, mask = loaded.inputs.random(batch=2, seed=1)
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, use_cache=False).logits
        got = loaded.model(ids, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_tied_head_is_kept_dense_or_untied_with_its_cost(folders, tmp_path):
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model(folders["gpt2"], seq_len=8)
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    head = next(d for d in report.layers if d.name == "lm_head")
    assert head.status == "skipped" and head.tied_to == "transformer.wte.weight" and "--untie-tied" in head.reason
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight  # still one tensor
    save_checkpoint(loaded, tmp_path / "tied.pt")
    kept = load_model(str(tmp_path / "tied.pt")).model
    assert kept.lm_head.weight is kept.transformer.wte.weight  # and one tensor after a restore
    untied = load_model(folders["gpt2"], seq_len=8)
    untied.model, report = sparsify_(untied.model, "magnitude", untie_tied=True)
    assert "lm_head" in report.sparsified
    assert report.tied[0].action == "untied" and report.tied[0].extra_bytes == hf_factories.VOCAB * 32 * 4
    assert untied.model.lm_head.weight is not untied.model.transformer.wte.weight
    # the checkpoint restores the untied, sparse head (not the embedding's values)
    save_checkpoint(untied, tmp_path / "untied.pt")
    restored = load_model(str(tmp_path / "untied.pt"))
    assert torch.equal(restored.model.lm_head.weight, untied.model.lm_head.weight)
    assert not torch.equal(restored.model.lm_head.weight, restored.model.transformer.wte.weight)


def test_attention_flops_count_for_eager_and_sdpa():
    from sparsekit.analyze.torch_layers import analyze_model

    reports = {impl: analyze_model(wrap(hf_factories.gpt2_lm(attn_implementation=impl)[0], ["input_ids:1x32:int64"])) for impl in ("eager", "sdpa")}
    layers = sum(a.flops for a in reports["sdpa"].layers)
    # 2 layers x 2 products (scores, context) x 2 FLOPs x 32 x 32 positions x 32 channels (all heads)
    attention = 2 * 2 * 2 * 32 * 32 * 32
    for impl, report in reports.items():
        assert report.total_flops >= layers + attention, impl
        assert report.summary["amdahl_bound"] < 2.0
    assert reports["eager"].total_flops == reports["sdpa"].total_flops


def test_wrapped_in_memory_models_and_their_checkpoints(tmp_path):
    from sparsekit.sparsify.sparsify import sparsify_

    model, _ = hf_factories.bert_classifier()
    loaded = wrap(model, seq_len=8)  # a Hugging Face model: inputs and architecture from its config
    loaded.model, report = sparsify_(loaded.model, "magnitude")
    save_checkpoint(loaded, tmp_path / "hf.pt")
    restored = load_model(str(tmp_path / "hf.pt"))
    assert restored.source["kind"] == "hf-config" and restored.inputs == loaded.inputs
    x = loaded.inputs.random(batch=2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(restored.model(*x), loaded.model(*x))

    plain = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    memory = wrap(plain, [(1, 16)])
    with pytest.raises(ModelSourceError, match="cannot checkpoint the in-memory model.*sk.wrap"):
        save_checkpoint(memory, tmp_path / "plain.pt")
    assert not (tmp_path / "plain.pt").exists()
    built = wrap(load_model(f"{DATA / 'user_model.py'}:build", {"width": 32}).model, [(2, 16, 12, 12)], source=f"{DATA / 'user_model.py'}:build", args={"width": 32})
    save_checkpoint(built, tmp_path / "factory.pt")
    with pytest.raises(UntrustedSourceError):  # a checkpoint's factory runs only when the caller names it
        load_model(str(tmp_path / "factory.pt"))
    assert load_model(str(tmp_path / "factory.pt"), model_sources=[f"{DATA / 'user_model.py'}:build"]).model.proj.out_features == 32


def test_checkpoint_of_a_factory_model_keeps_its_inputs(tmp_path):
    from sparsekit.sparsify.sparsify import sparsify_

    loaded = load_model(f"{DATA / 'user_model.py'}:build_without_shapes", input_shapes=["1x16x8x8"])
    loaded.model, _ = sparsify_(loaded.model, "magnitude")
    save_checkpoint(loaded, tmp_path / "u.pt")
    trusted = [f"{DATA / 'user_model.py'}:build_without_shapes"]
    restored = load_model(str(tmp_path / "u.pt"), model_sources=trusted)  # the factory declares no shape: the checkpoint's is used
    assert restored.inputs.tensors[0].shape == (1, 16, 8, 8)
    override = load_model(str(tmp_path / "u.pt"), input_shapes=["3x16x6x6"], dynamic_axes=["input:2=height"], model_sources=trusted)
    assert override.inputs.tensors[0].shape == (3, 16, 6, 6) and override.inputs.tensors[0].dynamic == ((2, "height"),)
