"""Data files as users bring them, made in the tests: the scikit-learn digits as an image-folder
tree, a CSV and a Parquet file; the docstring pairs as JSONL and as a text file; a tiny Llama with
a tokenizer trained offline, a tiny ViT with its image processor; sine-wave WAV folders and tiny
Wav2Vec2 / Whisper models with their feature extractors."""

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


def sine_wav(path: Path, hz: float, rate: int = 16000, seconds: float = 0.25, width: int = 2, channels: int = 1) -> Path:
    """A sine of ``hz`` Hz as a PCM WAV file (``width`` bytes per sample, the same on every channel)."""
    import wave

    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * hz * t)
    scale = float(1 << (8 * width - 1)) - 1
    if width == 1:
        raw = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in np.round(x * scale))
    else:
        raw = np.round(x * scale).astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(len(t), width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.repeat(frames, channels, axis=0).tobytes())
    return path


TONES = {"low": 220.0, "mid": 880.0, "high": 3520.0}
"""The classes of the sine folders: each a tone, in Hz."""


def sine_folder(root: Path, per_class: int = 4, labelled: bool = True, rate: int = 16000) -> Path:
    """``root/<low|mid|high>/<i>.wav`` (or flat ``root/<class>-<i>.wav``): short sines, a tone per
    class with a few Hz between clips; every third clip at twice ``rate`` (decimated when read)."""
    for name, hz in TONES.items():
        for i in range(per_class):
            file = root / name / f"{i}.wav" if labelled else root / f"{name}-{i}.wav"
            sine_wav(file, hz + 7 * i, rate * (2 if i % 3 == 2 else 1))
    return root


def tiny_wav2vec2_classifier(folder: Path) -> Path:
    """A Wav2Vec2 sequence classifier (hidden 32, one layer, a class per tone) with random weights
    and a ``Wav2Vec2FeatureExtractor``, saved as hf:DIR."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True, classifier_proj_size=32,
                            num_labels=len(TONES), id2label=dict(enumerate(TONES)), label2id={n: i for i, n in enumerate(TONES)})
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    return folder


def tiny_whisper(folder: Path, mels: int = 16) -> Path:
    """A Whisper model (d_model 32, one encoder and one decoder layer, 32 input frames) with random
    weights and a ``WhisperFeatureExtractor`` of ``mels`` bins, saved as hf:DIR."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=96, num_mel_bins=mels, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16, max_target_positions=32, decoder_start_token_id=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=mels).save_pretrained(folder)
    return folder
