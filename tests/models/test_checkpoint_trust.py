"""Every kind of file the kit writes reads back as data only: its pickle names no global beyond
PyTorch's weights-only set and ``SAFE_GLOBALS``, and the kit's readers (which refuse anything
else) restore it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.serialization import get_unsafe_globals_in_checkpoint

from sparsekit._safe_load import SAFE_GLOBALS
from sparsekit.models.calib import load_calibration
from sparsekit.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.quantize.ptq import quantize_
from sparsekit.recover.distill import distill_loss, distillation_model, export_student
from sparsekit.recover.finetune import TrainingConfig, TrainingState, finetune_
from sparsekit.sparsify.sparsify import sparsify_

SMALL = {"mlp": {"in_features": 32, "hidden": 64}, "cnn": {"width": 32, "image_size": 16}, "bert": {"vocab": 64, "hidden": 64, "layers": 1, "heads": 2, "ffn": 128, "seq": 16}}
ALLOWED = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}


def _sparse(name: str, method: str = "magnitude", permute: bool = False):
    loaded = load_model(name, SMALL[name])
    calib = load_calibration(None, loaded.inputs, 4) if method == "sparsegpt" else None
    loaded.model, report = sparsify_(loaded.model, method, calib=calib, permute=permute, permute_sweeps=2)
    return loaded, {"sparsify": {k: v for k, v in report.to_dict().items() if k != "check"}}


def _quantized(name: str, precision: str, calib_method: str):
    loaded, meta = _sparse(name)
    loaded.model = quantize_(loaded.model, load_calibration(None, loaded.inputs, 4), precision, method=calib_method)
    return loaded, meta


def _student(name: str):
    teacher = load_model(name, SMALL[name]).model.eval()
    loaded, meta = _sparse(name)
    wrapped = distillation_model(loaded.model, teacher, "logits")
    batches = lambda epoch: [loaded.inputs.random(4) for _ in range(2)]  # noqa: E731

    def loss_fn(m, batch):
        m(*batch)
        return distill_loss(m)

    report = finetune_(wrapped, batches, loss_fn, TrainingConfig(epochs=1, lr=1e-4))
    loaded.model = export_student(wrapped)
    return loaded, {**meta, "finetune": {"report": report.to_dict(), "metrics": {"fidelity": 0.99}}}


CHECKPOINTS = {
    "mlp magnitude": lambda: _sparse("mlp"),
    "cnn sparsegpt + permutation": lambda: _sparse("cnn", "sparsegpt", permute=True),
    "bert magnitude + permutation": lambda: _sparse("bert", permute=True),
    "mlp int8 (max)": lambda: _quantized("mlp", "int8", "max"),
    "cnn int8 (entropy)": lambda: _quantized("cnn", "int8", "entropy"),
    "bert fp8 (max)": lambda: _quantized("bert", "fp8", "max"),
    "mlp distilled student": lambda: _student("mlp"),
}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_every_checkpoint_kind_is_plain_data(tmp_path, kind):
    loaded, meta = CHECKPOINTS[kind]()
    path = save_checkpoint(loaded, tmp_path / "model.pt", meta)
    assert set(get_unsafe_globals_in_checkpoint(str(path))) <= ALLOWED
    assert read_checkpoint(path)["meta"] == meta
    restored = load_checkpoint(path)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(restored.model.state_dict()[key], value, msg=key)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(32, 64), nn.Linear(64, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("variant", ["plain", "qat", "distillation"])
def test_every_training_state_is_plain_data(tmp_path, optimizer, variant):
    torch.manual_seed(0)
    model, _ = sparsify_(_Net(), "magnitude")
    batches = lambda epoch: [(torch.randn(8, 32), torch.randint(0, 8, (8,))) for _ in range(2)]  # noqa: E731
    loss_fn = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    if variant == "qat":
        model = quantize_(model, [(torch.randn(8, 32),) for _ in range(2)], "int8")
    elif variant == "distillation":
        model = distillation_model(model, copy.deepcopy(model).eval(), "logits")

        def loss_fn(m, b):
            m(b[0])
            return distill_loss(m)

    state = TrainingState(tmp_path / "state.pt", "run")
    finetune_(model, batches, loss_fn, TrainingConfig(epochs=1, lr=1e-3, optimizer=optimizer), state)
    assert set(get_unsafe_globals_in_checkpoint(str(state.path))) <= ALLOWED
    saved = state.load()
    assert saved["step"] == 2 and set(saved["model"]) == set(model.state_dict())
    assert saved["optimizer"]["state"], "the optimizer's moments are in the state"
