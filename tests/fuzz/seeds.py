"""The real, valid files the fuzz targets mutate, each made once per run by the kit itself.

Every seed is small (a zoo MLP of width 32, a one-layer BERT of width 32) so that a mutated copy
that still loads costs a fraction of a second to check, analyze or export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MLP_ARGS = {"in_features": 32, "hidden": 32, "depth": 1, "classes": 4}
"""The zoo MLP every checkpoint seed is built from (one hidden layer: 32 -> 32 -> 4)."""

RECIPE = {
    "version": 1,
    "name": "fuzz",
    "model": {"source": "mlp", "args": dict(MLP_ARGS)},
    "sparsify": {"method": "magnitude", "include": ["*"], "exclude": [], "calib_samples": 4},
    "export": None,
}
"""A recipe that runs analyze and a magnitude sparsify of the small MLP (no task, no export)."""


@dataclass(frozen=True)
class Seeds:
    """Paths of the seed files (all under one folder)."""

    root: Path
    checkpoint: Path
    pruned: Path
    low_rank: Path
    bert: Path
    recipe: Path
    onnx: Path
    state: Path
    state_fingerprint: str
    loop_dir: Path


def _mlp():
    from sparsekit.models.source import load_model

    return load_model("mlp", dict(MLP_ARGS))


def make_seeds(root: Path) -> Seeds:
    """Write every seed under ``root`` and return their paths."""
    import torch

    from sparsekit.export.export import export_
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.prune.apply import prune_
    from sparsekit.sparsify.sparsify import sparsify_

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sparse = _mlp()
    sparse.model, _ = sparsify_(sparse.model, "magnitude")
    checkpoint = save_checkpoint(sparse, root / "mlp.pt")

    pruned, _ = prune_(_mlp(), granularity="channel", ratio=0.5, round_to=8)
    pruned = save_checkpoint(pruned, root / "pruned.pt")
    low, _ = prune_(_mlp(), granularity="low_rank", rank_fraction=0.25, round_to=8)
    low_rank = save_checkpoint(low, root / "low_rank.pt")

    onnx = root / "mlp.onnx"
    export_(sparse, "fp32", onnx)

    bert = _bert_folder(root / "bert")
    recipe = root / "recipe.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    state, fingerprint = _training_state(root / "train.state.pt")
    loop_dir = _loop_folder(root / "loop", checkpoint)
    return Seeds(root, checkpoint, pruned, low_rank, bert, recipe, onnx, state, fingerprint, loop_dir)


def _bert_folder(folder: Path) -> Path:
    """A one-layer BERT of width 32 written by ``save_pretrained`` (config.json + safetensors)."""
    import transformers

    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def tiny_training(model):
    """``(batches, loss_fn, config)`` of a two-step fine-tuning of the small MLP (fixed data)."""
    import torch

    from sparsekit.recover.config import TrainingConfig

    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, MLP_ARGS["in_features"], generator=gen), torch.randint(0, MLP_ARGS["classes"], (4,), generator=gen)) for _ in range(2)]

    def loss_fn(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    return (lambda epoch: data), loss_fn, TrainingConfig(epochs=1, lr=1e-3)


def _training_state(path: Path) -> tuple[Path, str]:
    """A training state written by a real (two-step) ``finetune_`` run; returns it and its fingerprint."""
    from sparsekit.recover.finetune import TrainingState, finetune_, run_fingerprint

    model = _mlp().model
    batches, loss_fn, config = tiny_training(model)
    fingerprint = run_fingerprint(model, config)
    finetune_(model, batches, loss_fn, config, TrainingState(path, fingerprint))
    return path, fingerprint


def _loop_folder(folder: Path, checkpoint: Path) -> Path:
    """A loop work folder as ``iterative_prune`` leaves it after one step: ``loop.json`` + ``step1.pt``.

    The fingerprint is filled in by the loop target itself (it depends on the task and settings).
    """
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, folder / "step1.pt")
    step = {"step": 1, "target": 0.5, "params": 100, "flops": 100, "params_unpruned": 200, "flops_unpruned": 200, "one_shot": {"accuracy": 50.0},
            "metrics": {"accuracy": 50.0}, "drop": 0.0, "within": True, "finetune_seconds": 0.1, "seconds": 0.1, "checkpoint": "step1.pt", "heads": None}
    report = {"task": "fuzz", "metric": "accuracy", "unpruned": {"accuracy": 50.0}, "max_drop": 100.0, "steps": [step], "accepted": 1, "stopped": None, "fingerprint": ""}
    (folder / "loop.json").write_text(json.dumps(report))
    return folder
