"""sparsekit: PyTorch model -> 2:4 structured-sparse ONNX / TensorRT on Ampere+ GPUs, with proof.

The public API is imported lazily: ``import sparsekit`` loads neither torch, ModelOpt, ONNX nor
TensorRT, and never touches CUDA.

Typical use::

    import sparsekit as sk

    loaded = sk.load_model("bert")                       # zoo name, file.py:factory, hf:DIR, checkpoint...
    loaded = sk.wrap(my_model, ["input_ids:1x128:int64:0..30522"])  # or an in-memory model
    print(sk.analyze_model(loaded).summary)              # eligibility, FLOP shares, Amdahl bound
    loaded.model, report = sk.sparsify_(loaded.model, "magnitude", exclude=["head"])
    sk.save_checkpoint(loaded, "bert.sparse.pt")
    result = sk.export_(loaded, "fp16", "bert.fp16.onnx")  # 2:4 re-checked, ORT parity checked
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "load_model": "sparsekit.models.source",
    "LoadedModel": "sparsekit.models.source",
    "InputSpec": "sparsekit.input_spec",
    "InputTensor": "sparsekit.input_spec",
    "load_calibration": "sparsekit.models.calib",
    "save_checkpoint": "sparsekit.models.checkpoint",
    "load_checkpoint": "sparsekit.models.checkpoint",
    "analyze_model": "sparsekit.analyze.torch_layers",
    "analyze_onnx": "sparsekit.analyze.onnx_layers",
    "amdahl_bound": "sparsekit.analyze.rules",
    "sparsify_": "sparsekit.sparsify.sparsify",
    "mask_weights_2to4_": "sparsekit.sparsify.direct",
    "check_model": "sparsekit.sparsify.check",
    "check_onnx": "sparsekit.sparsify.check",
    "quantize_": "sparsekit.quantize.ptq",
    "permute_channels_": "sparsekit.sparsify.permute",
    "finetune_": "sparsekit.recover.finetune",
    "TrainingConfig": "sparsekit.recover.config",
    "FinetuneConfig": "sparsekit.recover.config",
    "finetune_stage_": "sparsekit.recover.task_finetune",
    "SparsifyConfig": "sparsekit.sparsify.config",
    "sparsify_loaded_": "sparsekit.sparsify.sparsify",
    "PruneConfig": "sparsekit.prune.config",
    "prune_": "sparsekit.prune.apply",
    "prune_stage_": "sparsekit.recover.prune_loop",
    "ExportConfig": "sparsekit.export.config",
    "export_all_": "sparsekit.export.export",
    "trust_sources": "sparsekit.models.trust",
    "MaskGuard": "sparsekit.recover.masks",
    "reconstruct_blocks_": "sparsekit.recover.reconstruct",
    "distillation_model": "sparsekit.recover.distill",
    "layer_sensitivity": "sparsekit.recover.sensitivity",
    "get_task": "sparsekit.tasks",
    "export_": "sparsekit.export.export",
    "load_recipe": "sparsekit.recipe.schema",
    "Recipe": "sparsekit.recipe.schema",
    "run_recipe": "sparsekit.recipe.runner",
    "SparsekitError": "sparsekit.errors",
    "wrap": "sparsekit.models.source",
    "flatten_outputs": "sparsekit.models.outputs",
    "load_text_calibration": "sparsekit.models.calib",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsekit' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
