"""Which parts of a transformer may lose width: whole attention heads and FFN neurons, never the
residual stream.

Recognised attention blocks hold separate ``query``/``key``/``value`` (BERT, the zoo encoder, ViT)
or ``q_proj``/``k_proj``/``v_proj`` (Llama, OPT...) Linear layers and a head count attribute. Their
three projections are pruned a whole head at a time (the head size stays, so attention scaling is
unchanged). Layers that write into the residual stream (out features == hidden size) keep their
outputs; fused QKV projections (GPT-2's ``c_attn``, ``qkv``) are left alone (their output splits
three ways, which a width cut would misalign).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

_PROJECTIONS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
_HEAD_ATTRS = ("num_attention_heads", "heads", "num_heads")
_FUSED_QKV = ("c_attn", "qkv", "query_key_value", "Wqkv", "in_proj")


@dataclass
class AttentionBlock:
    """One recognised attention block.

    Attributes:
        name: module path of the block.
        module: the block.
        projections: its query, key and value Linear layers.
        head_attr: the attribute holding its head count.
        head_size: size of one head (output features / heads), kept when heads are removed.
    """

    name: str
    module: nn.Module
    projections: tuple[nn.Linear, nn.Linear, nn.Linear]
    head_attr: str
    head_size: int

    @property
    def heads(self) -> int:
        return int(getattr(self.module, self.head_attr))

    def sync_heads_(self) -> None:
        """Set the block's head count (and Hugging Face's ``all_head_size``) from its projections' width."""
        heads = self.projections[0].out_features // self.head_size
        setattr(self.module, self.head_attr, heads)
        if isinstance(getattr(self.module, "all_head_size", None), int):
            self.module.all_head_size = heads * self.head_size


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """Every attention block of ``model`` with separate Q/K/V Linear projections and a head count."""
    blocks = []
    for name, module in model.named_modules():
        head_attr = next((a for a in _HEAD_ATTRS if isinstance(module.__dict__.get(a), int) and not isinstance(module.__dict__.get(a), bool)), None)
        if head_attr is None:
            continue
        for names in _PROJECTIONS:
            layers = [getattr(module, n, None) for n in names]
            if all(isinstance(layer, nn.Linear) for layer in layers):
                heads = int(getattr(module, head_attr))
                if heads > 0 and layers[0].out_features % heads == 0 and len({layer.out_features for layer in layers}) == 1:
                    blocks.append(AttentionBlock(name, module, tuple(layers), head_attr, layers[0].out_features // heads))
                break
    return blocks


def residual_width(blocks: list[AttentionBlock]) -> int | None:
    """The residual stream's width (the projections' input features), or None without attention."""
    widths = {b.projections[0].in_features for b in blocks}
    return widths.pop() if len(widths) == 1 else None


def transformer_fixed_layers(model: nn.Module, blocks: list[AttentionBlock]) -> dict[str, str]:
    """``{layer name: why}`` of the Linear layers whose outputs must keep their width in a transformer."""
    hidden = residual_width(blocks)
    fixed = {}
    if hidden is None:
        return fixed
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _FUSED_QKV:
            fixed[name] = "fused QKV projection (its output splits into query, key and value)"
        elif module.out_features == hidden and not any(module in b.projections for b in blocks):
            fixed[name] = f"writes the residual stream (width {hidden})"
    return fixed
