"""One FLOP count for every route: the sparse FLOP share ``analyze`` reports on a PyTorch model is
the share ``build`` (its sparse-kernel report) and ``bench`` (its Amdahl bound) read from the
model's 2:4 ONNX export, for a model with shared layers (ALBERT), an encoder-decoder with a tied
head (BART) and the zoo BERT; and ONNX ops beyond Linear/Conv (Einsum, ConvTranspose) count as
PyTorch counts them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.analyze.flop_count import attention_flops, einsum_flops
from sparsekit.analyze.onnx_layers import analyze_onnx
from sparsekit.analyze.torch_layers import analyze_model
from sparsekit.backends.build import build_engine
from sparsekit.backends.spec import BuildSpec
from sparsekit.bench.pair import _amdahl_from_onnx
from sparsekit.export.export import export_
from sparsekit.models.source import load_model, wrap
from sparsekit.sparsify.sparsify import sparsify_

transformers = pytest.importorskip("transformers", reason="Hugging Face models need the 'minilm' extra (transformers)")

TOLERANCE = 0.005
"""Half a percentage point: the most the routes may differ by (rounding of per-layer shares)."""


def _albert():
    return transformers.AlbertForSequenceClassification(transformers.AlbertConfig(
        vocab_size=96, embedding_size=32, hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128, max_position_embeddings=64, num_labels=3))


def _bart():
    return transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))


def _spec(name: str, tmp_path) -> str:
    if name == "bert":
        return "bert"
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    folder = tmp_path / name
    {"albert": _albert, "bart": _bart}[name]().save_pretrained(str(folder))
    return f"hf:{folder}"


@pytest.mark.parametrize("name", ["albert", "bart", "bert"])
def test_analyze_build_and_bench_report_the_same_sparse_flop_share(name, tmp_path):
    loaded = load_model(_spec(name, tmp_path))
    analysis = analyze_model(loaded)
    analyzed = analysis.summary["sparsifiable_flop_share"]

    loaded.model, _ = sparsify_(loaded.model, "magnitude")
    onnx_path = export_(loaded, "fp32", tmp_path / f"{name}.onnx").path
    onnx_analysis = analyze_onnx(onnx_path)
    bench = _amdahl_from_onnx(onnx_path)["sparse_flop_share"]
    build = build_engine(onnx_path, BuildSpec(backend="onnxruntime", sparse=True), tmp_path / "store").report["summary"]["onnx_2to4_flop_share"]

    assert onnx_analysis.total_flops == pytest.approx(analysis.total_flops, rel=TOLERANCE), name
    assert 0.3 < analyzed < 1.0, name
    assert abs(bench - analyzed) <= TOLERANCE, (name, analyzed, bench)
    assert abs(build - analyzed) <= TOLERANCE, (name, analyzed, build)


class _EinsumAndDeconv(nn.Module):
    """Attention written as einsums over 2 heads, then a transposed conv over the result."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.up = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)

    def forward(self, x):  # x: [batch, 16, 32]
        q, k, v = (t.reshape(-1, 16, 2, 16) for t in self.qkv(x).chunk(3, dim=-1))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k).softmax(-1)
        out = torch.einsum("bhqk,bkhd->bqhd", scores, v)
        return self.up(out.reshape(-1, 16, 4, 8))


def test_einsum_and_transposed_conv_count_the_same_in_pytorch_and_onnx(tmp_path):
    loaded = wrap(_EinsumAndDeconv().eval(), [("x", (1, 16, 32), "float32")])
    analysis = analyze_model(loaded)
    onnx_path = export_(loaded, "fp32", tmp_path / "einsum.onnx").path
    onnx_analysis = analyze_onnx(onnx_path)
    qkv = 2 * 16 * 32 * 96
    attention = attention_flops(1 * 16 * 2 * 16, 1 * 16 * 2 * 16, 16)
    deconv = 2 * (16 * 4 * 8) * 8 * 2 * 2
    assert analysis.total_flops == qkv + attention + deconv
    assert onnx_analysis.total_flops == analysis.total_flops


def test_einsum_flops_are_the_product_of_every_index():
    assert einsum_flops("bqhd,bkhd->bhqk", [[1, 16, 2, 8], [1, 12, 2, 8]]) == 2 * 1 * 16 * 2 * 8 * 12
    assert einsum_flops("ij->j", [[3, 4]]) is None
    assert einsum_flops("...ij,jk->...ik", [[2, 3, 4], [4, 5]]) is None
