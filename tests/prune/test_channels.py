"""Channel pruning on real models: dependencies, heads, BatchNorm, rebuild from checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsekit.errors import ModelSourceError, NoEligibleLayersError, SparsekitError
from sparsekit.models.checkpoint import load_checkpoint, save_checkpoint
from sparsekit.models.source import load_model
from sparsekit.prune.channels import prune_channels_

DATA = __import__("pathlib").Path(__file__).parents[1] / "data"


def _out(loaded, x):
    with torch.no_grad():
        return loaded.model(*x)


def test_removing_channels_whose_batchnorm_is_zero_leaves_outputs_unchanged():
    torch.manual_seed(0)
    loaded = load_model("cnn", {"width": 32})
    model = loaded.model
    dead = {}
    with torch.no_grad():
        for block in model.stages:  # conv1 -> BN -> ReLU -> conv2 inside each residual block
            bn = block.conv1[1]
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            channels = torch.randperm(bn.num_features)[: bn.num_features // 2]
            bn.weight[channels] = 0.0  # gamma exactly zero ...
            bn.bias[channels] = 0.0  # ... and no shift: the channel is dead after BN
            dead[block.conv1[0]] = bn.num_features // 2
    x = loaded.inputs.random(batch=4, seed=3)
    before = _out(loaded, x)
    widths = {m: m.out_channels for m in dead}
    report = prune_channels_(loaded, 0.5, "bn", round_to=1, layer_ratios={f"stages.{i}.conv1.0": 0.5 for i in range(3)}, exclude=["stem.*", "stages.*.conv2.*", "stages.*.shortcut.*", "head"])
    after = _out(loaded, x)
    for conv, removed in dead.items():
        assert conv.out_channels == widths[conv] - removed
    assert report.params[1] < report.params[0]
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_resnet_residual_groups_shrink_together_and_checkpoint_rebuilds(tmp_path):
    loaded = load_model("cnn", {"width": 32})
    report = prune_channels_(loaded, 0.5, "l1", round_to=8)
    m = loaded.model
    for block in m.stages:
        # the residual add couples conv2's output, the shortcut's output and the block's input
        assert block.conv2[0].out_channels == block.conv2[1].num_features
        if not isinstance(block.shortcut, nn.Identity):
            assert block.shortcut[0].out_channels == block.conv2[0].out_channels
        assert block.conv1[0].out_channels % 8 == 0 and block.conv1[0].out_channels < 64 * 4
    assert m.stages[0].conv1[0].out_channels == 16 and m.head.out_features == 10
    assert report.fixed["head"] == "its output is a model output"
    assert report.flops[1] < 0.4 * report.flops[0]
    x = loaded.inputs.random(batch=3, seed=1)
    save_checkpoint(loaded, tmp_path / "p.pt")
    again = load_model(str(tmp_path / "p.pt"))
    assert torch.equal(_out(loaded, x), _out(again, x))


@pytest.mark.parametrize("source", ["bert", "hf"])
def test_transformer_prunes_whole_heads_and_ffn_neurons_not_the_residual_stream(source, tmp_path):
    if source == "bert":
        loaded = load_model("bert", {"heads": 4, "hidden": 128, "ffn": 512})
        blocks = [(layer, layer.heads, layer.query, layer.ffn_in) for layer in loaded.model.layers]
    else:
        loaded = load_model(f"{DATA / 'hf_factories.py'}:bert_classifier", {"layers": 2})
        layers = loaded.model.bert.encoder.layer
        blocks = [(layer.attention.self, layer.attention.self.num_attention_heads, layer.attention.self.query, layer.intermediate.dense) for layer in layers]
    hidden = blocks[0][2].in_features
    head_size = blocks[0][2].out_features // blocks[0][1]
    ffn = blocks[0][3].out_features
    x = loaded.inputs.random(batch=2, seed=0)
    shapes = [tuple(t.shape) for t in (_out(loaded, x) if isinstance(_out(loaded, x), tuple) else (_out(loaded, x),))]
    report = prune_channels_(loaded, 0.5, "l2", round_to=8)
    for attn, heads_before, query, ffn_in in blocks:
        heads_now = getattr(attn, "heads", None) or attn.num_attention_heads
        assert heads_now == heads_before // 2
        assert query.out_features == heads_now * head_size  # whole heads go, the head size stays
        assert query.in_features == hidden  # the residual stream keeps its width
        assert ffn_in.out_features == ffn // 2 and ffn_in.out_features % 8 == 0
    assert len(report.heads) == len(blocks)
    out = _out(loaded, x)
    assert [tuple(t.shape) for t in (out if isinstance(out, tuple) else (out,))] == shapes
    save_checkpoint(loaded, tmp_path / "p.pt")
    again = load_model(str(tmp_path / "p.pt"), model_sources=[f"{DATA / 'hf_factories.py'}:bert_classifier"])
    a, b = _out(loaded, x), _out(again, x)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(u, v)


def test_bad_settings_are_refused_with_one_line():
    loaded = load_model("bert")
    with pytest.raises(SparsekitError, match=r"ratio must be in \[0, 1\)"):
        prune_channels_(loaded, 1.0)
    with pytest.raises(SparsekitError, match="no BatchNorm layer"):
        prune_channels_(loaded, 0.25, "bn")
    with pytest.raises(SparsekitError, match="needs gradients"):
        prune_channels_(loaded, 0.25, "taylor")
    with pytest.raises(NoEligibleLayersError):
        prune_channels_(load_model("mlp"), 0.25, exclude=["*"])


def test_taylor_importance_uses_the_gradients_it_is_given():
    torch.manual_seed(0)
    loaded = load_model("mlp", {"in_features": 32, "hidden": 64, "depth": 1})
    x = torch.randn(16, 32)
    y = torch.randint(0, 10, (16,))
    first = loaded.model.net[0] if hasattr(loaded.model, "net") else [m for m in loaded.model.modules() if isinstance(m, nn.Linear)][0]
    with torch.no_grad():  # neurons 0..31 of the first layer carry no gradient: Taylor scores them 0
        nxt = [m for m in loaded.model.modules() if isinstance(m, nn.Linear)][1]
        nxt.weight[:, :32] = 0.0
    keep_grad = {}

    def gradients(model):
        nn.functional.cross_entropy(model(x), y).backward()
        keep_grad["seen"] = first.weight.grad is not None

    kept_weights = first.weight[32:].detach().clone()
    prune_channels_(loaded, 0.5, "taylor", round_to=8, gradients=gradients)
    assert keep_grad["seen"] and first.out_features == 32
    assert torch.equal(first.weight.detach(), kept_weights)  # exactly the live neurons survive


def test_checkpoint_with_an_unknown_or_mismatched_edit_is_refused(tmp_path):
    import torch as t

    loaded = load_model("cnn", {"width": 32})
    prune_channels_(loaded, 0.25)
    save_checkpoint(loaded, tmp_path / "p.pt")
    payload = t.load(tmp_path / "p.pt", weights_only=True)
    payload["source"]["edits"] = [{"kind": "grow"}]
    t.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelSourceError, match="unknown kind 'grow'"):
        load_checkpoint(tmp_path / "bad.pt")
    payload["source"]["edits"] = [{"kind": "resize", "modules": {"nowhere.conv": {"attrs": {}, "shapes": {"weight": [1]}}}}]
    t.save(payload, tmp_path / "bad2.pt")
    with pytest.raises(ModelSourceError, match="lacks"):
        load_checkpoint(tmp_path / "bad2.pt")


def test_prune_entry_dispatches_and_refuses_bad_settings():
    from sparsekit.prune.apply import prune_
    from sparsekit.prune.config import PruneConfig

    loaded, summary = prune_(load_model("mlp", {"in_features": 32, "hidden": 64, "depth": 1}), granularity="low_rank", rank_fraction=0.25, round_to=8)
    assert summary["granularity"] == "low-rank" and summary["low_rank"]["params"][1] < summary["low_rank"]["params"][0]
    loaded, summary = prune_(load_model("mlp", {"in_features": 32, "hidden": 64, "depth": 1}), PruneConfig(ratio=0.5, round_to=8))
    assert summary["channels"]["params"][1] < summary["channels"]["params"][0] and loaded.model(torch.randn(2, 32)).shape == (2, 10)
    with pytest.raises(SparsekitError, match="invalid pruning setting granularity"):
        prune_(loaded, granularity="blocks")
    with pytest.raises(SparsekitError, match="invalid pruning setting layer_ratio"):
        prune_(loaded, layer_ratio=["stages.*"])
