"""The prune -> fine-tune loop on the digits task, network slimming, and the stacked recipe."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sparsekit.errors import TrainingStateError
from sparsekit.models.source import load_model
from sparsekit.recover.prune_loop import LoopConfig, iterative_prune, step_ratio
from sparsekit.recover.finetune import TrainingConfig, finetune_


def test_step_ratio_reaches_the_cumulative_share():
    kept = 1.0
    done = 0.0
    for target in (0.25, 0.5, 0.75):
        kept *= 1 - step_ratio(done, target)
        done = target
        assert abs((1 - kept) - target) < 1e-12


def test_loop_prunes_fine_tunes_and_resumes(digits_dense, tmp_path):
    import copy

    task, dense, _ = digits_dense
    loaded = copy.deepcopy(dense)
    config = LoopConfig(schedule=[0.25, 0.5], max_drop=5.0, finetune=TrainingConfig(epochs=1, lr=1e-3), batch_size=64)
    pruned, report = iterative_prune(loaded, task, config, tmp_path / "w")
    steps = report["steps"]
    assert [s["target"] for s in steps] == [0.25, 0.5] and report["accepted"] == 2
    assert steps[1]["params"] < steps[0]["params"] < steps[0]["params_unpruned"]
    assert steps[0]["metrics"]["accuracy"] > steps[0]["one_shot"]["accuracy"]  # fine-tuning recovered something
    saved = json.loads((tmp_path / "w" / "loop.json").read_text())
    assert saved["accepted"] == 2 and (tmp_path / "w" / "step2.pt").is_file()
    params = sum(p.numel() for p in pruned.model.parameters())
    assert params == steps[1]["params"]
    # resume: nothing left to do, the same model comes back without training
    again, report2 = iterative_prune(copy.deepcopy(dense), task, config, tmp_path / "w", resume=True)
    assert report2["steps"] == steps and sum(p.numel() for p in again.model.parameters()) == params
    other = config.model_copy(update={"max_drop": 4.0})
    with pytest.raises(TrainingStateError, match="other loop settings"):
        iterative_prune(copy.deepcopy(dense), task, other, tmp_path / "w", resume=True)


def test_loop_stops_at_the_first_step_past_max_drop(digits_dense, tmp_path):
    """A schedule whose first step stays within max_drop and whose second cannot: the loop accepts
    step 1, stops after step 2 and returns step 1's model."""
    import copy

    from sparsekit.recover.prune_loop import ChannelSettings

    task, dense, _ = digits_dense
    config = LoopConfig(schedule=[0.25, 0.97], max_drop=5.0, finetune=TrainingConfig(epochs=1, lr=1e-3), batch_size=64, channels=ChannelSettings(round_to=1))
    pruned, report = iterative_prune(copy.deepcopy(dense), task, config, tmp_path / "w")
    assert [s["within"] for s in report["steps"]] == [True, False], report["steps"]
    assert report["accepted"] == 1 and report["stopped"].startswith("step 2 dropped")
    assert sum(p.numel() for p in pruned.model.parameters()) == report["steps"][0]["params"]


def test_network_slimming_drives_batchnorm_scales_down():
    def train(bn_l1: float) -> float:
        torch.manual_seed(0)
        model = load_model("cnn", {"width": 16, "image_size": 8}).model
        batches = [((torch.randn(8, 3, 8, 8),), torch.randint(0, 10, (8,))) for _ in range(6)]
        finetune_(model, lambda e: batches, lambda m, b: nn.functional.cross_entropy(m(*b[0]), b[1]), TrainingConfig(epochs=3, lr=1e-2, weight_decay=0.0, grad_clip=0.0, bn_l1=bn_l1))
        return sum(float(m.weight.detach().abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    assert train(0.05) < 0.95 * train(0.0)  # measured: 303 against 335 over 336 scales starting at 1
