"""The Hugging Face adapter: everything the kit knows about ``transformers`` models lives here.

What it does, so that no stage below the model layer knows about transformers:

* loads a ``save_pretrained`` folder offline with the class its config names (``hf:DIR``), and
  rebuilds a model from a stored class name + config (checkpoints of in-memory models);
* declares default inputs from the config, as Hugging Face Optimum's per-architecture ONNX configs
  do, for text, text and speech seq2seq, audio and vision models, with integer value ranges and
  dynamic axes (:mod:`sparsekit.models.hf_inputs`);
* says how to call the model: ``use_cache=False`` (a cache is not a tensor output),
  ``return_dict=True`` where ``forward`` takes it (named outputs) and, for a text model given no
  ``attention_mask`` (or a seq2seq model no ``decoder_attention_mask``), a mask of ones (without
  one, transformers' mask code traces to ``aten::diff``, which the ONNX exporter cannot write);
* converts ``transformers.Conv1D`` (GPT-2's attention and MLP projections, ``x @ W + b`` with
  ``W [in, out]``) exactly into ``nn.Linear`` (``W.T``), so analysis, ModelOpt and the ONNX checks
  see the Linear layer it is;
* tokenizes a text file for calibration with the folder's tokenizer.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from sparsekit.errors import CalibrationDataError, MissingDependencyError, ModelSourceError, SparsekitError
from sparsekit.input_spec import InputSpec
from sparsekit.models.adapter import forward_parameters
from sparsekit.models.hf_inputs import SEQUENCE, complete_inputs, default_inputs, input_examples, input_ranges  # noqa: F401 - the adapter's input side
from sparsekit.models.limits import check_declared_sizes, check_model_size
from sparsekit.models.trust import current_policy
from sparsekit._lazy import lazy_import

hf_logging = lazy_import("transformers.utils.logging")
hf_dynamic_modules = lazy_import("transformers.dynamic_module_utils")
hf_pytorch_utils = lazy_import("transformers.pytorch_utils")

log = logging.getLogger(__name__)

PREFIX = "hf:"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_FIX_INSTALL = "pip install transformers (or the kit's 'minilm' extra, which brings it)"


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("Hugging Face models need 'transformers', which is not installed", _FIX_INSTALL) from exc
    return transformers


def is_hf_model(model: nn.Module) -> bool:
    """Whether ``model`` is a ``transformers`` ``PreTrainedModel`` (never imports transformers)."""
    tf = sys.modules.get("transformers")
    return tf is not None and isinstance(model, tf.PreTrainedModel)


@contextmanager
def _quiet() -> Iterator[None]:
    """transformers' INFO/WARNING chatter (unused weights, config notes) and progress bars off."""
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def hf_folder(spec: str) -> Path:
    """The folder of an ``hf:DIR`` spec, checked to hold a config and weights.

    Raises:
        ModelSourceError: missing folder, no ``config.json`` or no weights file.
    """
    path = Path(spec[len(PREFIX):] if spec.startswith(PREFIX) else spec).expanduser()
    if not path.is_dir():
        raise ModelSourceError(f"Hugging Face model folder '{path}' does not exist", "give a folder written by model.save_pretrained(DIR) after 'hf:'")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"'{path}' has no config.json, so it is not a Hugging Face model folder", "save the model with model.save_pretrained(DIR)")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ModelSourceError(f"'{path}' has a config.json but no weights ({', '.join(_WEIGHT_FILES[::2])})", "save the model with model.save_pretrained(DIR), which writes the weights too")
    return path.resolve()


def _model_class(tf, name: str, raw_config: dict | None = None):
    cls = getattr(tf, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, tf.PreTrainedModel)):
        if raw_config and raw_config.get("auto_map"):
            raise ModelSourceError(f"'{name}' is not a model class of transformers {tf.__version__}: the folder brings its own Python code (auto_map), which is never run unless you allow it", "if you trust the folder's code, pass --trust-remote-code")
        raise ModelSourceError(f"'{name}' is not a model class of transformers {tf.__version__}", "name a transformers model class, e.g. --model-arg architecture=BertModel")
    return cls


def _read_config_json(path: Path) -> dict:
    """``config.json`` of a model folder as a dict, its declared sizes checked (nothing built yet).

    Raises:
        ModelSourceError: not JSON, or not an object.
        ResourceLimitError: a declared size is past the limits.
    """
    file = path / "config.json"
    if file.stat().st_size > 16 * 1024 * 1024:
        raise ModelSourceError(f"'{file}' is {file.stat().st_size:,} bytes, too large for a model config", "check the folder: a config.json is a few KB")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelSourceError(f"'{file}' is not valid JSON ({type(exc).__name__})", "save the model again with model.save_pretrained(DIR)") from exc
    if not isinstance(raw, dict):
        raise ModelSourceError(f"'{file}' is not a JSON object", "save the model again with model.save_pretrained(DIR)")
    check_declared_sizes(raw, f"the config of '{path}'")
    return raw


def _config_fix(raw: dict, remote: bool) -> str:
    if raw.get("auto_map") and not remote:
        return "the folder brings its own Python code (auto_map), which is never run unless you allow it: if you trust it, pass --trust-remote-code"
    return "check config.json (it must be written by save_pretrained)"


def _remote_class(tf, config, path: Path):
    """The model class a trusted folder's ``auto_map`` names (its code runs: the user allowed it)."""
    auto_map = config.auto_map if isinstance(config.auto_map, dict) else {}
    keys = [k for k in auto_map if k.startswith("AutoModel")]
    if not keys:
        raise ModelSourceError(f"'{path}' has an auto_map without a model class", "name one with --model-arg architecture=CLASS")
    ref = auto_map[keys[0]]
    return hf_dynamic_modules.get_class_from_dynamic_module(ref if isinstance(ref, str) else ref[0], str(path), local_files_only=True)


def _check_config_size(cls, config, what: str) -> None:
    """Build ``cls`` from ``config`` on the meta device and refuse it past ``--max-params``.

    Raises:
        ResourceLimitError: too many parameters.
        ModelSourceError: transformers rejects the config.
    """
    try:
        check_model_size(lambda: cls._from_config(config), f"{cls.__name__} from {what}")
    except SparsekitError:
        raise
    except Exception as exc:
        raise ModelSourceError(f"transformers cannot build {cls.__name__} from {what}: {_first_line(exc)}", "check the config values") from exc


def load_hf_folder(spec: str, args: dict[str, Any]) -> nn.Module:
    """Load the model of a ``save_pretrained`` folder, offline, with the class its config names.

    Args:
        spec: ``hf:DIR`` (or the folder itself).
        args: ``architecture`` (a transformers class name, overriding the config's), ``attn_implementation``
            (``eager``/``sdpa``), and any config attribute to override (e.g. ``num_labels``).

    Raises:
        ModelSourceError: not a model folder, unknown class, or transformers cannot load it.
        MissingDependencyError: transformers is not installed.
    """
    tf = _transformers()
    path = hf_folder(spec)
    args = dict(args)
    arch = args.pop("architecture", None)
    remote = current_policy().remote_code
    raw = _read_config_json(path)
    with _quiet():
        try:
            config = tf.AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=remote)
        except Exception as exc:
            raise ModelSourceError(f"cannot read the config of '{path}': {_first_line(exc)}", _config_fix(raw, remote)) from exc
        declared = getattr(config, "architectures", None) or []
        names = [arch] if arch else list(declared) if isinstance(declared, (list, tuple)) else [declared]  # config.json may hold any value
        if not names:
            raise ModelSourceError(f"the config of '{path}' names no model class ('architectures' is empty)", "pass --model-arg architecture=CLASS, e.g. architecture=BertModel")
        cls = _remote_class(tf, config, path) if remote and getattr(config, "auto_map", None) and not arch else _model_class(tf, str(names[0]), raw)
        _check_config_size(cls, config, f"the config of '{path}'")
        try:
            model, info = cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True, trust_remote_code=remote, **args)
        except Exception as exc:
            raise ModelSourceError(f"transformers cannot load '{path}' as {cls.__name__}: {_first_line(exc)}", "check the folder and the --model-arg values (config attributes)") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        log.warning("%s: %d weight(s) are not in '%s' and were initialised at random (%s)", cls.__name__, len(missing), path, ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else ""))
    return model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hf_record(model: nn.Module) -> dict[str, Any]:
    """Class name, full config (plain JSON types) and attention implementation: enough to rebuild it."""
    config = model.config
    return {
        "class": type(model).__name__,
        "config": json.loads(config.to_json_string(use_diff=False)),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }


def build_from_record(record: dict[str, Any]) -> nn.Module:
    """A freshly initialised model from :func:`hf_record` (weights come from a checkpoint).

    Raises:
        ModelSourceError: the class is unknown to the installed transformers or the config is rejected.
    """
    tf = _transformers()
    if not isinstance(record.get("config"), dict):
        raise ModelSourceError("the stored Hugging Face model has no config", "re-create the checkpoint with sparsekit")
    check_declared_sizes(record["config"], f"the stored config of {record.get('class')!r}")
    cls = _model_class(tf, record.get("class"))
    with _quiet():
        try:
            config = cls.config_class.from_dict(dict(record["config"]))
        except Exception as exc:
            raise ModelSourceError(f"transformers cannot read the stored config of {cls.__name__}: {_first_line(exc)}", "use the transformers version the checkpoint was written with") from exc
        _check_config_size(cls, config, "the stored config")
        try:
            kwargs = {"attn_implementation": record["attn_implementation"]} if record.get("attn_implementation") else {}
            model = cls._from_config(config, **kwargs)
        except Exception as exc:
            raise ModelSourceError(f"transformers cannot rebuild {cls.__name__} from the stored config: {_first_line(exc)}", "use the transformers version the checkpoint was written with") from exc
    return model.eval()


# ---- inputs --------------------------------------------------------------------------------------


def _params(model: nn.Module) -> list[str]:
    return forward_parameters(model)[1]


def call_conventions(model: nn.Module, spec: InputSpec) -> tuple[dict[str, Any], dict[str, str]]:
    """``(fixed keyword arguments, ones_like)`` for :func:`sparsekit.models.adapter.adapt_`."""
    params = _params(model)
    fixed = {k: v for k, v in (("use_cache", False), ("return_dict", True)) if k in params}  # no cache; named outputs
    pairs = (("attention_mask", "input_ids"), ("decoder_attention_mask", "decoder_input_ids"))
    ones_like = {mask: ids for mask, ids in pairs if ids in spec.names and mask in params and mask not in spec.names}
    return fixed, ones_like


# ---- Conv1D -> Linear ----------------------------------------------------------------------------


def conv1d_to_linear_(model: nn.Module) -> list[str]:
    """Replace every ``transformers.Conv1D`` in ``model`` by the equal ``nn.Linear``, in place.

    ``Conv1D(nf, nx)`` computes ``x @ W + b`` with ``W [nx, nf]``; the Linear gets ``W.T`` (made
    contiguous) and the same bias, so the model computes the same function and the weight sits
    ``[out, in]`` as TensorRT's Gemm/MatMul checks expect.

    Returns:
        The module paths converted.
    """
    tf = sys.modules.get("transformers")
    if tf is None:
        return []
    import torch

    converted = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, hf_pytorch_utils.Conv1D):
                continue
            nx, nf = child.weight.shape
            linear = nn.Linear(nx, nf, bias=child.bias is not None, device=child.weight.device, dtype=child.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                if child.bias is not None:
                    linear.bias.copy_(child.bias)
            linear.train(child.training)
            setattr(module, child_name, linear)
            converted.append(f"{name}.{child_name}" if name else child_name)
    if converted:
        log.info("converted %d transformers Conv1D layers to nn.Linear", len(converted))
    return converted


# ---- calibration text ----------------------------------------------------------------------------


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in a Hugging Face folder.

    Raises:
        CalibrationDataError: the folder has no tokenizer.
    """
    tf = _transformers()
    with _quiet():
        try:
            return tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise CalibrationDataError(f"the model folder '{folder}' has no usable tokenizer ({_first_line(exc)})", "save the tokenizer next to the model (tokenizer.save_pretrained(DIR)), or calibrate with --calib") from exc


def text_batches(folder: str | Path, spec: InputSpec, path: str | Path, samples: int, batch_size: int) -> list[tuple]:
    """Tokenize a text file (one text per line) into calibration batches that follow ``spec``.

    Texts are padded / truncated to the spec's sequence length; the first ``samples`` non-empty
    lines are used.

    Raises:
        CalibrationDataError: missing/empty file, no tokenizer, or inputs the tokenizer cannot make.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CalibrationDataError(f"calibration text file '{p}' does not exist", "give a text file with one sample per line")
    lines = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()][:samples]
    if not lines:
        raise CalibrationDataError(f"calibration text file '{p}' has no text", "give at least one non-empty line")
    tokenizer = load_tokenizer(folder)
    first = spec.tensors[0]
    if first.name != "input_ids" or len(first.shape) != 2:
        raise CalibrationDataError(f"--calib-text feeds token ids, and the model's first input is '{first.name}' {list(first.shape)}", "use --calib-text with text models (input_ids [B, S])")
    seq = first.shape[1]
    enc = tokenizer(lines, padding="max_length", truncation=True, max_length=seq, return_tensors="pt")
    missing = [n for n in spec.names if n not in enc]
    if missing:
        raise CalibrationDataError(f"the tokenizer does not produce input(s) {missing}", f"declare only inputs the tokenizer makes ({', '.join(enc.keys())})")
    columns = [enc[n].to(getattr(torch, spec.get(n).dtype)) for n in spec.names]
    return [tuple(c[i : i + batch_size] for c in columns) for i in range(0, len(lines), batch_size)]
