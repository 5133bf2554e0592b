"""The fuzz targets: each mutates a copy of a real seed file and runs what reads it.

Checkpoints, Hugging Face folders, recipes, ONNX files and ``--data`` sources go through the CLI in
this process (:func:`tests.conftest.sparsekit_inprocess`); training states and ``loop.json`` through the library
functions that resume from them (``finetune_``, ``iterative_prune``), since no cheap command reads
them. Every case runs inside :meth:`tests.fuzz.harness.Arena.watch`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import resource
import shutil
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies as S
from tests.fuzz.harness import Arena, assert_outcome
from tests.fuzz.seeds import MLP_ARGS, Seeds, tiny_training

MAX_PARAMS = "5000000"
"""--max-params of every command: a file may describe a model of at most 5 M parameters (20 MB)."""


def fuzz_settings(examples: int) -> settings:
    """Seeded, deterministic, no example database, no shrinking (:class:`Findings` records each
    failure with the example that found it, and the run stays within its time budget)."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=examples, phases=(Phase.explicit, Phase.generate), print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example, HealthCheck.filter_too_much])


MAX_CASE_GROWTH_MB = 1024
"""Most the process's peak RSS may grow in one case: nothing a 5 M-parameter limit allows needs more."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Findings:
    """Distinct failures of one target, each with the first example that showed it.

    A case that fails is recorded and the search goes on (so one run lists every distinct bug, not
    only the first); :meth:`raise_if_any` fails the target at the end.
    """

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.slowest: tuple[float, str] = (0.0, "")
        self.outcomes: dict[str, int] = {}

    def outcome(self, what: Any) -> None:
        """Count an outcome (an exit code, an error type): the report shows the cases reached both
        the success path and the refusals."""
        self.outcomes[str(what)] = self.outcomes.get(str(what), 0) + 1

    def collecting(self, case: Callable) -> Callable:
        """Wrap a property body: an exception it raises is recorded under its signature."""

        @functools.wraps(case)
        def wrapper(**kwargs):
            example = f"{case.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())[:1200]})"
            peak = _peak_rss_mb()
            start = time.perf_counter()
            try:
                case(**kwargs)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                first = (str(exc).strip().splitlines() or [""])[0]
                key = re.sub(r"\d+", "#", f"{type(exc).__name__}: {first}")[:90]
                self.found.setdefault(key, f"{type(exc).__name__}: {first[:400]}\n    example: {example}")
            seconds = time.perf_counter() - start
            if seconds > self.slowest[0]:
                self.slowest = (round(seconds, 2), example[:400])
            grown = _peak_rss_mb() - peak
            if grown > MAX_CASE_GROWTH_MB:
                self.found.setdefault(f"memory {case.__name__}", f"the peak RSS grew by {grown:.0f} MB in one case (limit {MAX_CASE_GROWTH_MB} MB)\n    example: {example}")

        return wrapper

    def raise_if_any(self) -> None:
        if self.found:
            raise AssertionError(f"{len(self.found)} distinct failure(s):\n" + "\n".join(f"- {v}" for v in self.found.values()))


def _filled(value: Any, arena: Arena) -> Any:
    """``value`` with every string's placeholders filled (recursively)."""
    if isinstance(value, str):
        return arena.fill(value)
    if isinstance(value, list):
        return [_filled(v, arena) for v in value]
    if isinstance(value, tuple) and value[:1] != ("tensor",):
        return tuple(_filled(v, arena) for v in value)
    if isinstance(value, dict):
        return {_filled(k, arena): _filled(v, arena) for k, v in value.items()}
    return value


def make_tensor(spec: tuple):
    """A tensor from :func:`tests.fuzz.strategies.tensor_specs` (expanded ones share one element)."""
    import torch

    _, shape, dtype, expand = spec
    dt = getattr(torch, dtype)
    if expand:
        return torch.zeros(1, dtype=dt).expand(*shape)
    return torch.zeros(shape, dtype=dt)


def _value(v: Any) -> Any:
    return make_tensor(v) if isinstance(v, tuple) and v[:1] == ("tensor",) else v


# ---- checkpoints --------------------------------------------------------------------------------------


def apply_checkpoint(payload: dict, mutation: tuple, arena: Arena) -> None:
    """Apply one :func:`tests.fuzz.strategies.checkpoint_mutations` change to a checkpoint payload."""
    op, *rest = _filled(mutation, arena)
    source = payload.get("source") if isinstance(payload.get("source"), dict) else {}
    if op.startswith("source.") and not isinstance(payload.get("source"), dict):
        return
    sd = payload.get("state_dict") if isinstance(payload.get("state_dict"), dict) else {}
    keys = sorted(sd)
    if op in ("source.spec", "source.kind", "source.args", "source.hf", "source.edits"):
        source[op.split(".")[1]] = rest[0]
    elif op == "source.code":
        (source["spec"], source["args"]), source["kind"] = rest[0], rest[1]
        source.pop("hf", None)
    elif op == "source.arg":
        if isinstance(source.get("args"), dict):
            source["args"][rest[0]] = rest[1]
    elif op == "source.edit+":
        edits = source.get("edits")
        source["edits"] = [*edits, rest[0]] if isinstance(edits, list) else [rest[0]]
    elif op == "source.del":
        source.pop(rest[0], None)
    elif op == "inputs":
        payload["inputs"] = rest[0]
    elif op == "input0":
        if isinstance(payload.get("inputs"), list) and payload["inputs"] and isinstance(payload["inputs"][0], dict):
            payload["inputs"][0][rest[0]] = rest[1]
    elif op == "meta":
        payload["meta"] = rest[0]
    elif op == "modelopt_state":
        payload["modelopt_state"] = rest[0]
    elif op == "modelopt_modes":
        if isinstance(payload.get("modelopt_state"), dict):
            payload["modelopt_state"]["modelopt_state_dict"] = [list(m) if isinstance(m, (list, tuple)) else m for m in rest[0]] if isinstance(rest[0], list) else rest[0]
    elif op == "modelopt_mode_config":
        modes = payload.get("modelopt_state", {}).get("modelopt_state_dict") if isinstance(payload.get("modelopt_state"), dict) else None
        if isinstance(modes, list) and modes:
            modes[0] = (modes[0][0], rest[0])
    elif op == "sd.drop" and keys:
        sd.pop(keys[rest[0] % len(keys)])
    elif op in ("sd.tensor", "sd.value") and keys:
        sd[keys[rest[0] % len(keys)]] = _value(rest[1])
    elif op == "sd.add":
        sd[rest[0]] = _value(rest[1])
    elif op == "top":
        payload[rest[0]] = rest[1]
    elif op == "top.del":
        payload.pop(rest[0], None)


def checkpoint_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    import torch

    payloads = {name: torch.load(path, weights_only=True) for name, path in (("mlp", seeds.checkpoint), ("pruned", seeds.pruned), ("low_rank", seeds.low_rank))}

    @fuzz_settings(examples)
    @given(seed=st.sampled_from(sorted(payloads)), mutations=st.lists(S.checkpoint_mutations(), max_size=3),
           command=st.sampled_from((("check",), ("check", "--require", "*"), ("analyze",), ("analyze", "--json"), ("export",))))
    @findings.collecting
    def fuzz_checkpoint(seed, mutations, command):
        with arena.case() as (inp, out):
            payload = copy.deepcopy(payloads[seed])
            for mutation in mutations:
                apply_checkpoint(payload, mutation, arena)
            path = inp / "ck.pt"
            torch.save(payload, path)
            extra = ["--output", str(out / "o.onnx"), "--precision", "fp32"] if command[0] == "export" else []
            with arena.watch(out):
                proc = cli(command[0], str(path), "--max-params", MAX_PARAMS, *command[1:], *extra)
            findings.outcome(proc.returncode)
            assert_outcome(proc, command[0], (0, 3) if command[0] == "check" else (0,))
            if proc.returncode != 0:
                assert not any(out.iterdir()), f"{command} failed and left {sorted(p.name for p in out.iterdir())}"

    return fuzz_checkpoint


# ---- Hugging Face config.json -------------------------------------------------------------------------

_EVIL_CONFIG = "import pathlib\npathlib.Path({sentinel!r}).touch()\nfrom transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil-test'\n"
_EVIL_MODEL = "import pathlib\npathlib.Path({sentinel!r}).touch()\nfrom transformers import PreTrainedModel\nclass EvilModel(PreTrainedModel):\n    pass\n"


def hf_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    base = json.loads((seeds.bert / "config.json").read_text())

    @fuzz_settings(examples)
    @given(mutations=st.lists(S.hf_mutations(), min_size=1, max_size=4), as_json=st.booleans())
    @findings.collecting
    def fuzz_hf_config(mutations, as_json):
        with arena.case() as (inp, out):
            folder = inp / "model"
            shutil.copytree(seeds.bert, folder)
            (folder / "configuration_evil.py").write_text(_EVIL_CONFIG.format(sentinel=str(arena.sentinel)))
            (folder / "modeling_evil.py").write_text(_EVIL_MODEL.format(sentinel=str(arena.sentinel)))
            config, raw = copy.deepcopy(base), None
            for op, *rest in _filled(mutations, arena):
                if op == "set":
                    config[rest[0]] = rest[1]
                elif op == "del":
                    config.pop(rest[0], None)
                else:
                    raw = rest[0]
            text = raw if raw is not None else json.dumps(config, default=str)
            (folder / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
            with arena.watch(out):
                proc = cli("analyze", f"hf:{folder}", "--max-params", MAX_PARAMS, *(["--json"] if as_json else []))
            findings.outcome(proc.returncode)
            assert_outcome(proc, "analyze")

    return fuzz_hf_config


# ---- recipes ------------------------------------------------------------------------------------------


def _set_path(data: dict, path: str, value: Any, delete: bool = False) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if delete:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _laughs(depth: int) -> str:
    """YAML whose aliases expand to 8**depth strings (PyYAML shares them; a walk over them does not)."""
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 8) + "]")
    return "\n".join(lines)


def _cheap(recipe) -> bool:
    """Whether running the validated recipe costs under a second or two (no task, no training, no
    export beyond fp32, the small MLP)."""
    if recipe.task or recipe.prune is not None or recipe.finetune is not None:
        return False
    if recipe.export is not None and recipe.export.precisions != ["fp32"]:
        return False
    if recipe.sparsify is not None and (recipe.sparsify.permute or recipe.sparsify.method != "magnitude"):
        return False
    return recipe.model.source == "mlp" and all(isinstance(v, int) and 0 < v <= 64 for v in recipe.model.args.values())


def recipe_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    import yaml

    from sparsekit.errors import SparsekitError
    from sparsekit.recipe.schema import load_recipe

    base = yaml.safe_load(seeds.recipe.read_text())

    @fuzz_settings(examples)
    @given(mutations=st.lists(S.recipe_mutations(), min_size=1, max_size=3))
    @findings.collecting
    def fuzz_recipe(mutations):
        with arena.case() as (inp, out):
            data, text, bomb = copy.deepcopy(base), None, 0
            for op, *rest in _filled(mutations, arena):
                if op in ("set", "del"):
                    _set_path(data, rest[0], rest[1] if op == "set" else None, delete=op == "del")
                elif op == "laughs":
                    _set_path(data, rest[0], "__BOMB__")
                    bomb = rest[1]
                else:
                    text = rest[0]
            if text is None and bomb:  # anchors first, then each section as a JSON flow value
                body = "".join(f"{json.dumps(k)}: {json.dumps(v, default=str)}\n" for k, v in data.items())
                text = _laughs(bomb) + "\n" + body.replace('"__BOMB__"', f"*l{bomb}")
            recipe_file = inp / "recipe.yaml"
            if text is None:
                text = yaml.safe_dump(data, allow_unicode=True)
            recipe_file.write_text(text, encoding="utf-8", errors="surrogateescape")
            run_dir = out / "run"
            with arena.watch(out):
                try:
                    recipe = load_recipe(recipe_file)
                except SparsekitError:
                    recipe = None
                if recipe is None or _cheap(recipe):  # invalid: the CLI must refuse it in one line; cheap: run it
                    proc = cli("run", str(recipe_file), "--out", str(run_dir), "--max-params", MAX_PARAMS)
                else:
                    proc = None
            findings.outcome("validated only" if proc is None else proc.returncode)
            if proc is not None:
                assert_outcome(proc, "run")
                if recipe is None:
                    assert not run_dir.exists(), "an invalid recipe created its run folder"

    return fuzz_recipe


# ---- ONNX ---------------------------------------------------------------------------------------------


def _nested_graph(depth: int, dims):
    from onnx import TensorProto, helper

    init = [TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)] if dims is not None else []  # dims declared, no data
    graph = helper.make_graph([helper.make_node("Identity", ["w" if dims is not None else "x"], ["y"])], "g0", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], init)
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    for i in range(1, depth):  # nested, not doubled: the file stays small
        node = helper.make_node("If", ["c"], ["y"], then_branch=graph, else_branch=leaf)
        graph = helper.make_graph([node], f"g{i}", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return graph


def apply_onnx(model, mutation: tuple, arena: Arena) -> None:
    """Apply one structured :func:`tests.fuzz.strategies.onnx_mutations` change to a ModelProto."""
    from onnx import TensorProto, helper

    op, *rest = _filled(mutation, arena)
    inits, nodes = model.graph.initializer, model.graph.node
    tensor = inits[rest[0] % len(inits)] if op in ("dims", "dtype", "raw_len", "typed", "external") and len(inits) else None
    node = nodes[rest[0] % len(nodes)] if op in ("op", "input", "domain", "subgraph", "attr_tensor") and len(nodes) else None
    if op == "dims" and tensor is not None:
        del tensor.dims[:]
        tensor.dims.extend(rest[1])
    elif op == "dtype" and tensor is not None:
        tensor.data_type = rest[1]
    elif op == "raw_len" and tensor is not None:
        delta = rest[1]
        tensor.raw_data = tensor.raw_data[:delta] if delta < 0 else tensor.raw_data + b"\0" * delta
    elif op == "typed" and tensor is not None:
        tensor.ClearField("raw_data")
        tensor.float_data.extend([0.0] * rest[1])
    elif op == "external" and tensor is not None:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", rest[1]), ("offset", rest[2]), ("length", rest[3])):
            if value is not None:
                tensor.external_data.add(key=key, value=str(value))
    elif op == "op" and node is not None:
        node.op_type = rest[1]
    elif op == "input" and node is not None:
        if rest[1] < len(node.input):
            node.input[rest[1]] = rest[2]
        else:
            node.input.append(rest[2])
    elif op == "domain" and node is not None:
        node.domain = rest[1]
    elif op == "subgraph" and node is not None:
        node.attribute.append(helper.make_attribute("then_branch", _nested_graph(rest[1], rest[2])))
    elif op == "attr_tensor" and node is not None:
        t = TensorProto(name="attr_t", data_type=rest[2])
        t.dims.extend(rest[1])
        node.attribute.append(helper.make_attribute("value", t))
    elif op == "opset":
        model.opset_import[0].version = rest[0]
    elif op == "ir_version":
        model.ir_version = rest[0]
    elif op == "metadata":
        existing = {p.key: p for p in model.metadata_props}
        if rest[0] in existing:
            existing[rest[0]].value = rest[1]
        else:
            model.metadata_props.add(key=rest[0], value=rest[1])


def onnx_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    import onnx

    base = onnx.load(str(seeds.onnx))

    @fuzz_settings(examples)
    @given(mutations=st.lists(S.onnx_mutations(), min_size=1, max_size=3), command=st.sampled_from((("check", "--require", "*"), ("check",), ("analyze",))))
    @findings.collecting
    def fuzz_onnx(mutations, command):
        with arena.case() as (inp, out):
            model = copy.deepcopy(base)
            byte_ops = [m for m in mutations if m[0] in ("flip", "truncate")]
            for mutation in mutations:
                if mutation not in byte_ops:
                    apply_onnx(model, mutation, arena)
            try:
                data = model.SerializeToString()
            except Exception:  # noqa: BLE001 - protobuf refuses some values (a negative dim is fine, an out-of-range int64 is not)
                return
            for op, frac, *byte in byte_ops:
                pos = min(int(frac * len(data)), max(len(data) - 1, 0))
                data = data[:pos] if op == "truncate" else data[:pos] + bytes([byte[0]]) + data[pos + 1:]
            path = inp / "model.onnx"
            path.write_bytes(data)
            with arena.watch(out):
                proc = cli(command[0], str(path), *command[1:])
            findings.outcome(proc.returncode)
            assert_outcome(proc, command[0], (0, 3) if command[0] == "check" else (0,))

    return fuzz_onnx


# ---- training states ------------------------------------------------------------------------------------


def apply_state(payload: dict, mutation: tuple, arena: Arena) -> None:
    op, *rest = _filled(mutation, arena)
    model = payload.get("model") if isinstance(payload.get("model"), dict) else {}
    opt = payload.get("optimizer") if isinstance(payload.get("optimizer"), dict) else {}
    keys = sorted(model)
    if op == "set":
        payload[rest[0]] = rest[1]
    elif op == "del":
        payload.pop(rest[0], None)
    elif op == "model.tensor" and keys:
        model[keys[rest[0] % len(keys)]] = make_tensor(rest[1])
    elif op == "model.drop" and keys:
        model.pop(keys[rest[0] % len(keys)])
    elif op == "opt.state" and isinstance(opt.get("state"), dict) and opt["state"]:
        entry = opt["state"][sorted(opt["state"], key=str)[rest[0] % len(opt["state"])]]
        if isinstance(entry, dict):
            entry[rest[1]] = _value(rest[2])
    elif op == "opt.group" and isinstance(opt.get("param_groups"), list) and opt["param_groups"] and isinstance(opt["param_groups"][0], dict):
        opt["param_groups"][0][rest[0]] = rest[1]
    elif op == "opt.set":
        opt[rest[0]] = rest[1]


def library_outcome(call: Callable[[], Any], findings: Findings) -> None:
    """``call()`` returns, or raises a SparsekitError whose message is one line."""
    from sparsekit.errors import SparsekitError

    try:
        call()
        findings.outcome("returned")
    except SparsekitError as exc:
        findings.outcome(type(exc).__name__)
        assert "\n" not in str(exc).strip(), f"a multi-line error: {str(exc)[:300]!r}"
    except Exception as exc:  # the finding
        raise AssertionError(f"{type(exc).__name__} instead of a SparsekitError: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}") from exc


def training_state_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    import torch

    from sparsekit.models.source import load_model
    from sparsekit.recover.finetune import TrainingState, finetune_

    base = torch.load(seeds.state, weights_only=True)

    @fuzz_settings(examples)
    @given(mutations=st.lists(S.state_mutations(), min_size=1, max_size=3))
    @findings.collecting
    def fuzz_training_state(mutations):
        with arena.case() as (_inp, out):
            payload = copy.deepcopy(base)
            for mutation in mutations:
                apply_state(payload, mutation, arena)
            path = out / "train.state.pt"  # resuming rewrites it: it lives in the output folder
            torch.save(payload, path)
            model = load_model("mlp", dict(MLP_ARGS)).model
            batches, loss_fn, config = tiny_training(model)
            with arena.watch(out):
                library_outcome(lambda: finetune_(model, batches, loss_fn, config, TrainingState(path, seeds.state_fingerprint)), findings)

    return fuzz_training_state


# ---- loop.json -----------------------------------------------------------------------------------------


def _tiny_task():
    """A task of 16 fixed samples for the small MLP (labels, accuracy): resuming costs milliseconds."""
    import numpy as np
    import torch

    from sparsekit.tasks.base import EvalResult, Task

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, MLP_ARGS["in_features"], generator=gen)
    y = torch.randint(0, MLP_ARGS["classes"], (16,), generator=gen)

    class TinyTask(Task):
        name = "fuzz"
        primary = "accuracy"
        model = ("mlp", dict(MLP_ARGS))

        def train_batches(self, batch_size, seed=0):
            return lambda epoch: [((x,), y)]

        def calibration(self, samples, batch_size=16):
            return [(x[:batch_size],)]

        def task_loss(self, model, batch):
            return torch.nn.functional.cross_entropy(model(*batch[0]), batch[1])

        def evaluate(self, model, reference=None):
            with torch.no_grad():
                out = model(x)
            hits = (out.argmax(-1) == y).float().numpy()
            return EvalResult({"accuracy": float(100 * hits.mean())}, hits, out.numpy().astype(np.float32))

    return TinyTask()


def loop_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    import torch

    from sparsekit.models.source import load_model
    from sparsekit.recover.prune_loop import LoopConfig, iterative_prune
    from sparsekit.recover.config import TrainingConfig

    task = _tiny_task()
    config = LoopConfig(schedule=[0.5], max_drop=100.0, finetune=TrainingConfig(epochs=1, lr=1e-3), batch_size=16)
    base = json.loads((seeds.loop_dir / "loop.json").read_text())
    checkpoint = torch.load(seeds.loop_dir / "step1.pt", weights_only=True)

    @fuzz_settings(examples)
    @given(mutations=st.lists(S.loop_mutations(), min_size=1, max_size=3))
    @findings.collecting
    def fuzz_loop_json(mutations):
        with arena.case() as (_inp, out):
            work = out / "work"  # resuming writes steps and loop.json: the work folder is the output
            shutil.copytree(seeds.loop_dir, work)
            loaded = load_model("mlp", dict(MLP_ARGS))
            report, raw = copy.deepcopy(base), None
            report["fingerprint"] = json.dumps({"config": json.loads(config.canonical_json()), "task": task.name, "model": loaded.source}, sort_keys=True, default=str)
            for op, *rest in _filled(mutations, arena):
                steps = report.get("steps") if isinstance(report.get("steps"), list) else []
                if op == "set":
                    report[rest[0]] = rest[1]
                elif op == "step" and steps and isinstance(steps[0], dict):
                    steps[0][rest[0]] = rest[1]
                elif op == "steps+" and steps:
                    report["steps"] = steps + [copy.deepcopy(steps[-1]) for _ in range(rest[0])]
                elif op == "raw":
                    raw = rest[0]
                elif op == "evil_step_checkpoint":
                    evil = copy.deepcopy(checkpoint)
                    evil["source"] = {**evil["source"], "kind": "factory", "spec": rest[0], "args": {"command": f"touch {arena.sentinel}"}}
                    torch.save(evil, work / "step1.pt")
            (work / "loop.json").write_text(raw if raw is not None else json.dumps(report, default=str), encoding="utf-8", errors="surrogateescape")
            with arena.watch(out):
                library_outcome(lambda: iterative_prune(loaded, task, config, work, resume=True), findings)

    return fuzz_loop_json


# ---- user data sources (--data) -----------------------------------------------------------------------

DATA_MODEL = ("cnn", "--model-arg", "in_channels=1", "--model-arg", "image_size=8", "--model-arg", "width=8")
"""The zoo CNN on 8x8 one-channel images that every data case trains or calibrates (a few thousand parameters)."""
DATA_COMMANDS = (("finetune", "--epochs", "1", "--batch-size", "16"), ("sparsify", "--method", "sparsegpt", "--calib-samples", "8"))


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, with a few bytes of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _table_bytes(rows: list[dict], fmt: str, mutations: list, arena: Arena) -> bytes:
    """``rows`` changed by the ``cell`` / ``column`` / ``rows`` mutations, written as CSV or JSONL,
    then encoded and changed by the ``encoding`` / ``bytes`` mutations."""
    import csv
    import io

    rows = copy.deepcopy(rows)
    columns = ["input", "label"]
    encoding, byte_changes = "utf-8", []
    for op, *rest in _filled(mutations, arena):
        if op == "cell" and rows:
            rows[rest[0] % len(rows)][rest[1]] = rest[2]
        elif op == "column":
            action, name, new = rest
            if action == "drop" and name in columns:
                columns.remove(name)
            elif action == "rename" and name in columns:
                columns[columns.index(name)] = new
                for row in rows:
                    row[new] = row.pop(name, "")
            elif action == "add":
                columns.append(new)
            elif action == "duplicate" and name in columns:
                columns.append(name)
        elif op == "rows":
            rows = rows[: rest[0]]
        elif op == "encoding":
            encoding = rest[0]
        elif op == "bytes":
            byte_changes.append(rest)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") if not isinstance(row.get(c), list) else " ".join(map(str, row[c])) for c in columns] for row in rows])
        text = buf.getvalue()
    else:
        text = "".join(json.dumps({c: row.get(c) for c in columns}, default=str) + "\n" for row in rows)
    data = text.encode(encoding, errors="replace")
    for action, where, chunk in byte_changes:
        at = int(where * len(data))
        if action == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ chunk[0]]) + data[at + 1 :]
        elif action == "insert":
            data = data[:at] + chunk + data[at:]
        elif action == "truncate":
            data = data[:at]
        elif action == "delete":
            data = data[:at] + data[at + len(chunk) :]
    return data


def _apply_image(folder, mutation: tuple, number: int, arena: Arena) -> None:
    """Apply one :func:`tests.fuzz.strategies.image_mutations` change to a copy of the image folder
    (the ``number``-th change: the files and links it adds are named after it)."""
    import os

    op, what = mutation
    cls = folder / "0"
    if not cls.is_dir() or cls.is_symlink():
        return
    first = sorted(p for p in cls.iterdir() if p.suffix == ".png" and not p.is_symlink())[0]
    name = f"zz{number}"
    if op == "file":
        content = {
            "empty": b"", "truncated": first.read_bytes()[:30], "bomb": _png_declaring(100_000, 100_000), "huge_dims": _png_declaring(9000, 9000),
            "text": b"not an image\n", "random": bytes((i * 73 + 11) % 256 for i in range(512)),
            "gif_bomb": b"GIF89a\xff\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02D\x01\x00;",
        }[what]
        (cls / f"{name}.png").write_bytes(content)
    elif op == "link":
        target = {"/etc/passwd": "/etc/passwd", "/etc": "/etc", "{SENTINEL}": str(arena.sentinel), "loop": str(cls / f"{name}.png"),
                  "dangling": str(folder / "missing.png"), "inside": str(first), "self": str(folder)}[what]
        os.symlink(target, cls / f"{name}.png" if what not in ("/etc", "self") else folder / name)
    elif what == "empty_class":
        (folder / name).mkdir()
    elif what == "nested":
        (cls / name).mkdir()
        shutil.copy(first, cls / name / "x.png")
    elif what == "hidden_class":
        shutil.copytree(cls, folder / f".{name}", symlinks=True)
    elif what == "file_at_root":
        shutil.copy(first, folder / f"{name}.png")
    elif what == "only_root_files":
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            shutil.rmtree(sub)  # the folder keeps only the files and links at its root
    elif what == "odd_suffix":
        first.rename(first.with_suffix(".jpg"))


def data_target(arena: Arena, seeds: Seeds, cli: Callable, examples: int, findings: Findings) -> Callable[[], None]:
    from tests.data_sources import files

    images, labels = files.digits(40)
    csv_rows = [{"input": " ".join(f"{v:.3f}" for v in im.ravel()), "label": str(int(y))} for im, y in zip(images, labels)]
    json_rows = [{"input": [round(float(v), 3) for v in im.ravel()], "label": int(y)} for im, y in zip(images, labels)]
    image_seed = files.digits_image_folder(arena.root / "data-seed" / "images", 40)

    @fuzz_settings(examples)
    @given(kind=st.sampled_from(("csv", "jsonl", "images")), table=st.lists(S.table_mutations(), min_size=1, max_size=3),
           image=st.lists(S.image_mutations(), min_size=1, max_size=2), command=st.sampled_from(DATA_COMMANDS))
    @findings.collecting
    def fuzz_data(kind, table, image, command):
        with arena.case() as (inp, out):
            if kind == "images":
                path = inp / "images"
                shutil.copytree(image_seed, path, symlinks=True)
                for number, mutation in enumerate(image):
                    _apply_image(path, mutation, number, arena)
            else:
                path = inp / f"data.{kind}"
                path.write_bytes(_table_bytes(csv_rows if kind == "csv" else json_rows, kind, table, arena))
            with arena.watch(out):
                proc = cli(command[0], *DATA_MODEL, *command[1:], "--data", str(path), "-o", str(out / "out.pt"))
            findings.outcome(proc.returncode)
            assert_outcome(proc, "run" if command[0] == "finetune" else command[0])  # finetune's progress line may precede its error
            if proc.returncode != 0:
                assert not any(out.iterdir()), f"{command[0]} failed and left {sorted(p.name for p in out.iterdir())}"

    return fuzz_data


TARGETS = {
    "checkpoint": (checkpoint_target, 180),
    "hf_config": (hf_target, 100),
    "recipe": (recipe_target, 80),
    "onnx": (onnx_target, 150),
    "training_state": (training_state_target, 40),
    "loop_json": (loop_target, 30),
    "data": (data_target, 80),
}
"""Target name -> (builder, cases per run): about 660 cases, ~30 s on a 2-core machine."""
