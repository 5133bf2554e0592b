"""A Llama-architecture decoder built from a config in code (random weights), for benchmarks.

Used as ``benchmarks/models/llama_decoder.py:build`` (a ``file.py:factory`` model source). The
defaults are a ~1.1 B-parameter decoder shaped like Llama 3.2 1B (hidden 2048, 16 layers, FFN 8192,
32 heads with 8 key/value heads) with a 32000-token vocabulary and an untied head. The wrapper
returns the logits as one tensor and passes an all-ones attention mask, so the TorchScript
exporter sees a plain ``input_ids -> logits`` model.
"""

from __future__ import annotations

import torch
from torch import nn


class CausalLMLogits(nn.Module):
    """``input_ids [batch, seq] -> logits [batch, seq, vocab]`` of a Hugging Face causal LM."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False).logits


def build(hidden: int = 2048, layers: int = 16, ffn: int = 8192, heads: int = 32, kv_heads: int = 8, vocab: int = 32000, seq: int = 128, seed: int = 0):
    """The decoder and its input (``input_ids:1x<seq>:int64``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=int(hidden), intermediate_size=int(ffn), num_hidden_layers=int(layers), num_attention_heads=int(heads),
        num_key_value_heads=int(kv_heads), vocab_size=int(vocab), max_position_embeddings=max(2048, int(seq)),
        tie_word_embeddings=False, attn_implementation="eager",
    )
    torch.manual_seed(int(seed))
    return CausalLMLogits(LlamaForCausalLM(config).eval()), [f"input_ids:1x{int(seq)}:int64:0..{int(vocab)}"]
