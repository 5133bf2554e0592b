

def test_per_tensor_weights_use_one_scale_per_tensor():
    import torch

    from sparsekit.models.source import load_model
    from sparsekit.quantize.ptq import quantize_

    loaded = load_model("mlp")
    calib = [loaded.inputs.random(batch=4, seed=i) for i in range(2)]
    import copy

    per_channel = quantize_(copy.deepcopy(loaded.model), calib)  # the same weights both ways
    per_tensor = quantize_(loaded.model, calib, per_channel_weights=False)
    amax = lambda m: next(x for n, x in m.named_modules() if n.endswith("weight_quantizer")).amax  # noqa: E731
    assert amax(per_channel).numel() > 1 and amax(per_tensor).numel() == 1
    assert torch.isclose(amax(per_tensor).flatten()[0], amax(per_channel).max())
