"""Every Hugging Face model family a user brings, as a ``save_pretrained`` folder, through the CLI
with no ``--input-shape``: ``hf:DIR`` -> sparsify (magnitude; SparseGPT for three) -> export fp16
and int8 -> check. Each family is a tiny random config (hidden 16-64, 1-2 layers, dims multiples
of 16 so its layers are 2:4-eligible); the inputs come from the config."""

import json
from pathlib import Path

import onnx
import pytest

pytest.importorskip("transformers", reason="Hugging Face models need the 'minilm' extra (transformers)")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "frozen_import_heap")


def _t5(tf):
    return tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=96, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, decoder_start_token_id=0, pad_token_id=0))


def _bart(tf):
    return tf.BartForConditionalGeneration(tf.BartConfig(vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                                         encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))


def _whisper(tf):
    return tf.WhisperForConditionalGeneration(tf.WhisperConfig(vocab_size=96, num_mel_bins=16, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                                               encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16, max_target_positions=32,
                                                               decoder_start_token_id=1, pad_token_id=0, bos_token_id=1, eos_token_id=2))


def _wav2vec2(tf):
    return tf.Wav2Vec2ForCTC(tf.Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 2),
                                               conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True))


def _convnext(tf):
    return tf.ConvNextForImageClassification(tf.ConvNextConfig(num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=32, num_labels=4, patch_size=4))


def _swin(tf):
    return tf.SwinForImageClassification(tf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4, num_labels=4))


def _clip_vision(tf):
    return tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, projection_dim=32))


def _llama(tf):
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                              max_position_embeddings=64, tie_word_embeddings=False))


def _albert(tf):
    return tf.AlbertForSequenceClassification(tf.AlbertConfig(vocab_size=96, embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                                              max_position_embeddings=64, num_labels=3))


# family: (builder, sparsify method, the ONNX inputs the config declares)
FAMILIES = {
    "t5": (_t5, "magnitude", ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"]),
    "bart": (_bart, "sparsegpt", ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"]),
    "whisper": (_whisper, "magnitude", ["input_features", "decoder_input_ids", "decoder_attention_mask"]),
    "wav2vec2": (_wav2vec2, "magnitude", ["input_values", "attention_mask"]),
    "convnext": (_convnext, "magnitude", ["pixel_values"]),
    "swin": (_swin, "sparsegpt", ["pixel_values"]),
    "clip_vision": (_clip_vision, "magnitude", ["pixel_values"]),
    "llama": (_llama, "sparsegpt", ["input_ids", "attention_mask"]),
    "albert": (_albert, "magnitude", ["input_ids", "attention_mask", "token_type_ids"]),
}


def _save(family: str, folder: Path) -> str:
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    FAMILIES[family][0](transformers).save_pretrained(str(folder))
    return f"hf:{folder}"


def _on_disk(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_sparsifies_exports_and_checks_without_input_shapes(family, cli, tmp_path):
    _, method, inputs = FAMILIES[family]
    spec = _save(family, tmp_path / family)
    ckpt = tmp_path / "sparse.pt"
    proc = cli("sparsify", spec, "--method", method, "-o", str(ckpt), "--json")
    assert proc.returncode == 0, proc.stderr
    sparsified = json.loads(proc.stdout)["sparsified"]
    assert sparsified, family

    proc = cli("export", str(ckpt), "--precision", "fp16", "--precision", "int8", "-o", str(tmp_path / "onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    exports = {e["precision"]: e for e in json.loads(proc.stdout)["exports"]}
    assert set(exports) == {"fp16", "int8"}
    for precision, export in exports.items():
        path = Path(export["path"])
        assert [i.name for i in onnx.load(str(path), load_external_data=False).graph.input] == inputs, precision
        assert export["parity"]["passed"] and sum(export["weight_bytes"].values()) > 0, precision
        proc = cli("check", str(path), "--json")
        assert proc.returncode == 0, proc.stderr
        check = json.loads(proc.stdout)
        assert check["passed"], precision
        sparse_in_onnx = {layer["name"] for layer in check["layers"] if layer["is_2to4"]}
        assert set(sparsified) <= sparse_in_onnx, (precision, sorted(set(sparsified) - sparse_in_onnx))
    int8, fp16 = (Path(exports[p]["path"]) for p in ("int8", "fp16"))
    assert _on_disk(int8) < _on_disk(fp16), (family, exports["int8"]["weight_bytes"], exports["fp16"]["weight_bytes"])


TEXT_NET = '''
import torch
from torch import nn


class TextNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids) * attention_mask.unsqueeze(-1))


def make():
    return TextNet()
'''


def test_missing_inputs_error_lists_the_models_own_inputs(cli, tmp_path):
    """A model that declares no inputs gets one line naming its inputs, an example each, and no
    image example for a text model."""
    factory = tmp_path / "text_net.py"
    factory.write_text(TEXT_NET)
    proc = cli("analyze", f"{factory}:make")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "its inputs: input_ids, attention_mask" in lines[0], proc.stderr
    assert "--input-shape input_ids:1x128:int64" in lines[0] and "--input-shape attention_mask:1x128:int64:0..2" in lines[0]
    assert "224" not in lines[0]


def test_hf_model_inputs_and_examples_come_from_its_config():
    """Seq2seq, speech and audio inputs with their ranges and dynamic axes; examples for a model the
    kit cannot declare name its own inputs."""
    import transformers

    from sparsekit.models.hf_inputs import DECODER_SEQUENCE, SEQUENCE, default_inputs, input_examples

    t5 = default_inputs(_t5(transformers))
    assert [(t.name, t.shape, t.high, t.dynamic) for t in t5.tensors] == [
        ("input_ids", (1, 128), 96, ((1, SEQUENCE),)), ("attention_mask", (1, 128), 2, ((1, SEQUENCE),)),
        ("decoder_input_ids", (1, 128), 96, ((1, DECODER_SEQUENCE),)), ("decoder_attention_mask", (1, 128), 2, ((1, DECODER_SEQUENCE),)),
    ]
    whisper = default_inputs(_whisper(transformers))
    assert whisper.get("input_features").shape == (1, 16, 32) and whisper.get("input_features").dynamic == ()
    assert whisper.get("decoder_input_ids").shape == (1, 32)
    audio = default_inputs(_wav2vec2(transformers), seq_len=4000)
    assert [(t.name, t.shape, t.dtype) for t in audio.tensors] == [("input_values", (1, 4000), "float32"), ("attention_mask", (1, 4000), "int64")]
    assert input_examples(_whisper(transformers))[:3] == ["input_features:1x16x3000", "attention_mask:1x128:int64:0..2", "decoder_input_ids:1x128:int64:0..96"]
