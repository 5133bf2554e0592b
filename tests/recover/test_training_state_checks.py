"""A training state is data: on resume every part is checked against this run (step range, list
lengths, weights, optimizer groups and per-parameter state), each problem one line."""

from __future__ import annotations

import pytest
import torch

from sparsekit.cli.main import main
from sparsekit.errors import TrainingStateError
from sparsekit.recover.finetune import TrainingConfig, TrainingState, finetune_, run_fingerprint
from tests.recover.test_finetune import _batches, _loss, _model

CONFIG = TrainingConfig(epochs=3, lr=1e-2)  # 6 batches per epoch: 18 steps


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real state of a finished 18-step run (what an interrupted resume would find), loaded raw."""
    model = _model()
    path = tmp_path_factory.mktemp("state") / "state.pt"
    finetune_(model, _batches, _loss, CONFIG, TrainingState(path, run_fingerprint(model, CONFIG)))
    return torch.load(path, weights_only=True)


def _copy(payload: dict) -> dict:
    optimizer = payload["optimizer"]
    return {**payload, "model": dict(payload["model"]), "optimizer": {"state": {k: dict(v) for k, v in optimizer["state"].items()}, "param_groups": [dict(g) for g in optimizer["param_groups"]]},
            "epoch_loss": list(payload["epoch_loss"]), "running": list(payload["running"]), "epoch_metrics": list(payload["epoch_metrics"])}


def first_tensor(d: dict):
    return next(iter(d))


TAMPERED = {
    "step 10**12": (lambda s: s.update(step=10**12), "step 1000000000000 is outside this run's 0..18"),
    "negative step": (lambda s: s.update(step=-6), "step -6 is outside this run's 0..18"),
    "step a bool": (lambda s: s.update(step=True), "'step' part is missing or of the wrong type"),
    "step a float": (lambda s: s.update(step=6.0), "'step' part is missing or of the wrong type"),
    "running list too long": (lambda s: s.update(running=[0.5] * 100_000), "100000 step loss(es) do not add up to its step 18"),
    "more epoch losses than steps": (lambda s: s.update(epoch_loss=[0.5] * 50), "50 epoch loss(es)"),
    "more evaluations than epochs": (lambda s: s.update(epoch_metrics=[{"a": 1.0}] * 4), "4 epoch evaluation(s)"),
    "a loss that is a string": (lambda s: s["epoch_loss"].__setitem__(0, "low"), "losses are not all numbers"),
    "evaluations not a list": (lambda s: s.update(epoch_metrics="abc"), "'epoch_metrics' part is not a list"),
    "an evaluation not a dict": (lambda s: s.update(epoch_metrics=[1, 2, 3]), "epoch evaluations are not all"),
    "weights missing one": (lambda s: s["model"].pop(first_tensor(s["model"])), "weights do not match the model's"),
    "weights with another": (lambda s: s["model"].update(extra=torch.zeros(1)), "'extra' is only in the state"),
    "weight of another shape": (lambda s: s["model"].update({first_tensor(s["model"]): torch.zeros(3)}), "is not a tensor of the model's shape"),
    "weight not a tensor": (lambda s: s["model"].update({first_tensor(s["model"]): [1.0, 2.0]}), "is not a tensor of the model's shape"),
    "no parameter groups": (lambda s: s["optimizer"].update(param_groups=[]), "does not have this optimizer's 1 parameter group"),
    "two parameter groups": (lambda s: s["optimizer"]["param_groups"].append(dict(s["optimizer"]["param_groups"][0])), "does not have this optimizer's 1 parameter group"),
    "group of other parameters": (lambda s: s["optimizer"]["param_groups"][0].update(params=[0]), "group 0 has other parameters"),
    "group with other betas": (lambda s: s["optimizer"]["param_groups"][0].update(betas="x"), "another 'betas'"),
    "group with an lr string": (lambda s: s["optimizer"]["param_groups"][0].update(lr="fast"), "another 'lr'"),
    "group with an unknown setting": (lambda s: s["optimizer"]["param_groups"][0].update(hook="os.system"), "other parameters or settings"),
    "moments of another shape": (lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(5)), "'exp_avg' of parameter 0 does not have the parameter's shape"),
    "state of parameter 99": (lambda s: s["optimizer"]["state"].update({99: {}}), "names parameter 99"),
    "a step count that is a string": (lambda s: s["optimizer"]["state"][0].update(step="x"), "step count of parameter 0 is not a number"),
    "optimizer state not a dict": (lambda s: s["optimizer"].update(state=[1]), "parameter group"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_state_is_refused_with_one_line(saved, tmp_path, case):
    change, expected = TAMPERED[case]
    payload = _copy(saved)
    change(payload)
    path = tmp_path / "state.pt"
    torch.save(payload, path)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingStateError) as info:
        finetune_(model, _batches, _loss, CONFIG, TrainingState(path, run_fingerprint(model, CONFIG)))
    line = str(info.value)
    assert expected in line and "\n" not in line and "delete it (or run without --resume)" in line, line
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing of the state was loaded"


def test_an_untouched_finished_state_resumes_without_training(saved, tmp_path):
    path = tmp_path / "state.pt"
    torch.save(_copy(saved), path)
    model = _model()
    report = finetune_(model, _batches, lambda m, b: pytest.fail("a finished run trains no step"), CONFIG, TrainingState(path, run_fingerprint(model, CONFIG)))
    assert report.resumed_from_step == report.steps == 18 and len(report.epoch_loss) == 3
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())


def test_finetune_resume_refuses_a_step_past_the_run_and_writes_no_checkpoint(tmp_path, capsys, monkeypatch):
    import sparsekit.models.checkpoint as checkpoint

    out = tmp_path / "out.pt"
    args = ["finetune", "--task", "digits", "--epochs", "1", "--lr", "1e-3", "-o", str(out), "--json"]

    def interrupted(*a, **k):  # training done, the state saved; stopped before the checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupted)
    assert main(args) == 130
    monkeypatch.undo()
    state = tmp_path / "out.pt.state.pt"
    payload = torch.load(state, weights_only=True)
    payload["step"] = 10**12
    torch.save(payload, state)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sparsekit:")]
    assert len(err) == 1 and "is damaged: its step 1000000000000 is outside this run's 0..45" in err[0], err
    assert not out.exists()
