"""The fine-tuning loop: resumable exactly, NaN-safe, refusing bad data and foreign states."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.errors import TrainingDataError, TrainingDivergedError, TrainingStateError
from sparsekit.recover.finetune import TrainingConfig, TrainingState, finetune_, run_fingerprint
from sparsekit.sparsify.check import check_model
from sparsekit.sparsify.sparsify import sparsify_


class Net(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(32, width), nn.Linear(width, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _model(width: int = 64):
    torch.manual_seed(0)
    model, _ = sparsify_(Net(width), "magnitude")
    return model



def _batches(epoch):
    g = torch.Generator().manual_seed(100 + epoch)
    return [(torch.randn(16, 32, generator=g), torch.randint(0, 8, (16,), generator=g)) for _ in range(6)]


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


CONFIG = TrainingConfig(epochs=3, lr=1e-2, save_every=2)


def test_training_lowers_the_loss_and_keeps_2to4():
    model = _model()
    report = finetune_(model, _batches, _loss, TrainingConfig(epochs=4, lr=1e-2))
    assert report.steps == 24 and report.epochs == 4 and report.masked_layers == 2
    assert report.epoch_loss[-1] < report.epoch_loss[0]
    assert check_model(model).passed


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    full = _model()
    finetune_(full, _batches, _loss, CONFIG)

    model = _model()
    state = TrainingState(tmp_path / "state.pt", run_fingerprint(model, CONFIG))
    calls = {"n": 0}

    def interrupted(m, batch):
        calls["n"] += 1
        if calls["n"] == 10:  # after the state saved at step 8
            raise KeyboardInterrupt
        return _loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        finetune_(model, _batches, interrupted, CONFIG, state)
    assert state.load()["step"] == 8

    resumed = _model()
    report = finetune_(resumed, _batches, _loss, CONFIG, TrainingState(tmp_path / "state.pt", run_fingerprint(resumed, CONFIG)))
    assert report.resumed_from_step == 8 and report.steps == 18
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path):
    model = _model()
    state = TrainingState(tmp_path / "state.pt", run_fingerprint(model, CONFIG))
    calls = {"n": 0}

    def diverging(m, batch):
        calls["n"] += 1
        loss = _loss(m, batch)
        return loss * float("nan") if calls["n"] == 7 else loss

    with pytest.raises(TrainingDivergedError, match="NaN|nan") as info:
        finetune_(model, _batches, diverging, CONFIG, state)
    assert "last good state" in str(info.value)
    saved = state.load()
    assert saved["step"] == 6
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["model"][name]), f"{name} not rolled back to the last good state"


def test_nan_on_the_first_step_resets_the_weights():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match="reset"):
        finetune_(model, _batches, lambda m, b: _loss(m, b) * float("inf"), CONFIG)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_empty_training_data_is_refused():
    with pytest.raises(TrainingDataError, match="no batch"):
        finetune_(_model(), lambda epoch: [], _loss, CONFIG)


def test_a_state_of_another_model_is_refused(tmp_path):
    small = _model(64)
    finetune_(small, _batches, _loss, CONFIG, TrainingState(tmp_path / "s.pt", run_fingerprint(small, CONFIG)))
    wide = _model(128)
    with pytest.raises(TrainingStateError, match="another model"):
        finetune_(wide, _batches, _loss, CONFIG, TrainingState(tmp_path / "s.pt", run_fingerprint(wide, CONFIG)))


def _first_epoch_loss(model):
    with torch.no_grad():
        return {"loss": float(sum(_loss(model.eval(), b) for b in _batches(0)) / 6), "training": model.training}


def test_each_epoch_is_evaluated_and_resumed_runs_keep_the_curve(tmp_path):
    seen = []
    model = _model()
    report = finetune_(model, _batches, _loss, CONFIG, progress=seen.append, evaluate=_first_epoch_loss)
    assert len(report.epoch_metrics) == 3 and report.epoch_metrics[-1]["loss"] < report.epoch_metrics[0]["loss"]
    assert "metrics" not in seen[0] and seen[-1]["metrics"] == report.epoch_metrics[1]  # the last step precedes the last evaluation
    assert model.training is False and all(m["training"] is False for m in report.epoch_metrics)

    resumed = _model()
    state = TrainingState(tmp_path / "state.pt", run_fingerprint(resumed, CONFIG))
    calls = {"n": 0}

    def interrupted(m, batch):
        calls["n"] += 1
        if calls["n"] == 16:  # in epoch 3, after the state saved at step 14
            raise KeyboardInterrupt
        assert m.training, "training mode must come back after an evaluation"
        return _loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        finetune_(resumed, _batches, interrupted, CONFIG, state, evaluate=_first_epoch_loss)
    again = finetune_(resumed, _batches, _loss, CONFIG, state, evaluate=_first_epoch_loss)
    assert again.resumed_from_step == 14 and len(again.epoch_metrics) == 3
    assert again.epoch_metrics[:2] == report.epoch_metrics[:2]
    assert abs(again.epoch_metrics[2]["loss"] - report.epoch_metrics[2]["loss"]) < 1e-5
