"""Data files as users bring them, made in the tests: the scikit-learn digits as an image-folder
tree, a CSV and a Parquet file; the docstring pairs as JSONL and as a text file; a tiny Llama with
a tokenizer trained offline, and a tiny ViT with its image processor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sparsekit.tasks.docstrings import DEFAULT_DATA

DIGITS_MODEL = ("cnn", {"in_channels": 1, "image_size": 8, "width": 32})
"""The zoo CNN the digits task trains (inputs ``[B, 1, 8, 8]``)."""


def digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` digits: images ``[n, 8, 8]`` in 0..1 and labels ``[n]``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images[:n] / 16.0).astype(np.float32), data.target[:n].astype(np.int64)


def digits_image_folder(root: Path, n: int = 300) -> Path:
    """``root/<digit>/<i>.png`` (8-bit grayscale)."""
    from PIL import Image

    images, labels = digits(n)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return root


def digits_csv(path: Path, n: int = 300, column: str = "input") -> Path:
    """A CSV with the 64 pixels (space-separated) in ``column`` and a ``label`` column."""
    images, labels = digits(n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([column, "label"])
        for image, label in zip(images, labels):
            w.writerow([" ".join(f"{v:.4f}" for v in image.ravel()), int(label)])
    return path


def digits_parquet(path: Path, n: int = 300) -> Path:
    """A Parquet file with a list column ``input`` (64 floats) and a ``label`` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images, labels = digits(n)
    table = pa.table({"input": [list(map(float, im.ravel())) for im in images], "label": labels.tolist()})
    pq.write_table(table, str(path))
    return path


def docstring_pairs(n: int = 120) -> list[list[str]]:
    """The first ``n`` evaluation pairs of the kit's copy of the docstrings data."""
    return json.loads(Path(DEFAULT_DATA).read_text(encoding="utf-8"))["eval"][:n]


def docstrings_jsonl(path: Path, n: int = 120) -> Path:
    """``{"text": query, "document": document}`` per line."""
    path.write_text("".join(json.dumps({"text": q, "document": d}) + "\n" for q, d in docstring_pairs(n)), encoding="utf-8")
    return path


def docstrings_text(path: Path, n: int = 120) -> Path:
    """One docstring text a line (query and document joined)."""
    path.write_text("".join(f"{q} {d}".replace("\n", " ") + "\n" for q, d in docstring_pairs(n)), encoding="utf-8")
    return path


def tiny_llama(folder: Path, text_file: Path, layers: int = 1, steps: int = 60) -> Path:
    """A Llama-architecture causal LM (hidden 32) with a WordLevel tokenizer trained on
    ``text_file``, itself trained ``steps`` steps on it (so that its next-token distributions are
    peaked, as a real LM's), saved as hf:DIR."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(text_file)], trainers.WordLevelTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=2)
    model = LlamaForCausalLM(config)
    lines = [line for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    _train(model, lambda i: fast(lines[(8 * i) % len(lines):][:8], padding=True, truncation=True, max_length=32, return_tensors="pt"), steps)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_vit(folder: Path, labels: int = 10, steps: int = 80) -> Path:
    """A ViT image classifier on 8x8 one-channel images (patch 4, hidden 32) with its image
    processor, trained ``steps`` steps on the digits, saved as hf:DIR."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=labels)
    model = ViTForImageClassification(config)
    images, targets = digits(600)
    x, y = torch.from_numpy(images[:, None] * 2 - 1), torch.from_numpy(targets)
    _train(model, lambda i: {"pixel_values": x[(32 * i) % 576:][:32], "labels": y[(32 * i) % 576:][:32]}, steps)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5], do_convert_rgb=False).save_pretrained(folder)
    return folder


def _train(model, batch, steps: int, lr: float = 3e-3) -> None:
    """``steps`` AdamW steps of the model's own loss on ``batch(step)`` (a dict of its inputs, labels included)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i in range(steps):
        inputs = dict(batch(i))
        if "labels" not in inputs:
            inputs["labels"] = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        loss = model(**inputs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
