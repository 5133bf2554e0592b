"""Built-in BERT-style encoder: ``input_ids [B, S] (int64) -> logits [B, classes]``.

Attention is written with plain MatMul/Softmax by default so that every exporter and runtime
handles it; ``attention="sdpa"`` uses ``F.scaled_dot_product_attention`` instead (fused
flash/memory-efficient kernels on GPUs, as deployed PyTorch and TensorRT's fused MHA run it).
Both compute the same function.
"""

from __future__ import annotations

import math

import torch
from torch import nn


ATTENTION = ("matmul", "sdpa")


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer (BERT): self-attention then a GELU feed-forward block."""

    def __init__(self, hidden: int, heads: int, ffn: int, attention: str = "matmul") -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, not '{attention}'")
        self.heads = heads
        self.attention = attention
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        return x.reshape(b, s, self.heads, h // self.heads).transpose(1, 2)  # reshape: 2:4 Linear outputs may be strided

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        if self.attention == "sdpa":
            ctx = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        ctx = ctx.transpose(1, 2).reshape(b, s, -1)  # heads x head size: fewer than hidden once heads are pruned
        x = self.ln1(x + self.attn_out(ctx))
        return self.ln2(x + self.ffn_out(nn.functional.gelu(self.ffn_in(x))))


class BertEncoder(nn.Module):
    """BERT-style classifier: embeddings, ``layers`` encoder layers, tanh pooler on token 0, linear head."""

    def __init__(self, vocab: int = 1000, hidden: int = 256, layers: int = 2, heads: int = 4, ffn: int = 1024, max_seq: int = 512, classes: int = 2, attention: str = "matmul") -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(max_seq, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, attention) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.ln(self.tokens(input_ids) + self.positions(pos))
        for layer in self.layers:
            x = layer(x)
        return self.head(torch.tanh(self.pooler(x[:, 0])))
