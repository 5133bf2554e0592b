"""Export built engines to a Triton model repository: ``<repo>/<model>/config.pbtxt`` and
``<repo>/<model>/<version>/``, one plan per compute capability (``cc_model_filenames``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from sparsekit._io import write_text_atomic
from sparsekit.backends.store import BuildRecord
from sparsekit.errors import SparsekitError
from sparsekit.backends.trt_flavours import FLAVOURS
from sparsekit.onnx_io.load import load_onnx

_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 3: "TYPE_INT8", 16: "TYPE_BF16"}


def _io_block(kind: str, values) -> list[str]:
    lines = [f"{kind} ["]
    for i, v in enumerate(values):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        lines.append(f'  {{ name: "{v.name}" data_type: {_ONNX_TO_TRITON.get(t.elem_type, "TYPE_FP32")} dims: [ {", ".join(map(str, dims))} ] }}{"," if i < len(values) - 1 else ""}')
    lines.append("]")
    return lines


def export_triton(records: Sequence[BuildRecord], repo: str | os.PathLike, model_name: str, version: int = 1, model=None) -> Path:
    """Write a Triton model folder for ``records`` (TensorRT plans for different GPUs, or one ORT model).

    ``model`` is the ONNX the records were built from, already loaded without its external data
    (None loads it from the first record's path).

    Returns:
        The model folder.

    Raises:
        SparsekitError: mixed backends, two plans for the same compute capability, or TensorRT-RTX
            engines (Triton's ``tensorrt_plan`` backend loads regular TensorRT plans only).
    """
    backends = {r.metadata["spec"]["backend"] for r in records}
    if len(backends) != 1 or not records:
        raise SparsekitError("a Triton model takes builds of one backend", "export TensorRT and ONNX Runtime builds as separate models")
    backend = backends.pop()
    if backend in FLAVOURS and not FLAVOURS[backend].triton:
        raise SparsekitError(
            f"Triton cannot serve {FLAVOURS[backend].title} engines: its tensorrt_plan backend loads regular TensorRT plans, and a {FLAVOURS[backend].title} engine is a different format compiled on the target GPU at load time",
            "build with --backend tensorrt for Triton, or load the engine with the TensorRT-RTX runtime in your application",
        )
    folder = Path(repo) / model_name
    version_dir = folder / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx_model = load_onnx(records[0].metadata["onnx"], load_external_data=False) if model is None else model
    init_names = {t.name for t in onnx_model.graph.initializer}
    lines = [f'name: "{model_name}"', "max_batch_size: 0"]
    if backend == "tensorrt":
        lines.insert(1, 'platform: "tensorrt_plan"')
        by_cc: dict[str, str] = {}
        for r in records:
            cc = r.metadata["target"]["cc"]
            if cc in by_cc:
                raise SparsekitError(f"two plans for compute capability {cc}", "give one build per GPU architecture")
            filename = f"model_sm{cc.replace('.', '')}.plan"
            shutil.copyfile(r.artifact, version_dir / filename)
            by_cc[cc] = filename
        lines.append("cc_model_filenames [")
        lines += [f'  {{ key: "{cc}" value: "{fn}" }}{"," if i < len(by_cc) - 1 else ""}' for i, (cc, fn) in enumerate(sorted(by_cc.items()))]
        lines.append("]")
    else:
        lines.insert(1, 'platform: "onnxruntime_onnx"')
        shutil.copyfile(records[0].artifact, version_dir / "model.onnx")
        for data in records[0].data_files:  # external data keeps its name: the artifact refers to it
            shutil.copyfile(data, version_dir / data.name)
    lines += _io_block("input", [i for i in onnx_model.graph.input if i.name not in init_names])
    lines += _io_block("output", list(onnx_model.graph.output))
    write_text_atomic(folder / "config.pbtxt", "\n".join(lines) + "\n")
    return folder
