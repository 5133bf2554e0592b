"""Files are data: a checkpoint, Hugging Face folder or recipe run never makes the kit run code the
user did not name on the command line, and sizes a file declares are refused before allocation.

Each payload is built here as an attacker would: a plain-data ``torch.save`` (the weights-only
unpickler accepts it), or a folder with its own Python. A sentinel file proves what did not run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from sparsekit.errors import ModelSourceError, ResourceLimitError, UntrustedSourceError
from tests.cli.test_cli import one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

USER_MODEL = Path(__file__).resolve().parents[1] / "data" / "user_model.py"


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of the zoo MLP (source: zoo, no code)."""
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model

    path = tmp_path_factory.mktemp("ck") / "mlp.pt"
    save_checkpoint(load_model("mlp", {"hidden": 64}), path)
    return path


@pytest.fixture(scope="module")
def factory_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint of a user factory (a copy of tests/data/user_model.py): (checkpoint, factory file)."""
    from sparsekit.models.checkpoint import save_checkpoint
    from sparsekit.models.source import load_model

    root = tmp_path_factory.mktemp("factory")
    factory = root / "user_model.py"
    shutil.copy(USER_MODEL, factory)
    path = root / "user.pt"
    save_checkpoint(load_model(f"{factory}:build", {"width": 32}), path)
    return path, factory


def _tampered(src: Path, dst: Path, **source) -> Path:
    ck = torch.load(src, weights_only=True)
    ck["source"] = {**ck["source"], **source}
    torch.save(ck, dst)
    return dst


def last_line_error(proc, match: str) -> str:
    """``run`` prints one progress line per stage; its error is one line, last, with no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sparsekit: error:") and match in last, proc.stderr
    return last


def _evil_module(folder: Path, sentinel: Path) -> Path:
    """A Python file that creates ``sentinel`` when imported and has a callable ``f``."""
    path = folder / "evil.py"
    path.write_text(f"import pathlib\npathlib.Path({str(sentinel)!r}).touch()\ndef f(**kw):\n    pathlib.Path({str(sentinel)!r}).touch()\n")
    return path


# ---- the code-execution hole: a checkpoint's model source -----------------------------------------


@pytest.mark.parametrize("command", ["check", "analyze", "export"])
@pytest.mark.parametrize("spec,args", [("os:system", {"command": "touch {sentinel}"}), ("subprocess:run", {"args": "touch {sentinel}", "shell": True})])
def test_a_checkpoint_naming_a_callable_runs_nothing(tmp_path, mlp_checkpoint, cli_inprocess, command, spec, args):
    sentinel = tmp_path / "PWNED"
    args = {k: v.format(sentinel=sentinel) if isinstance(v, str) else v for k, v in args.items()}
    evil = _tampered(mlp_checkpoint, tmp_path / "t.pt", kind="factory", spec=spec, args=args)
    extra = ["--output", str(tmp_path / "o.onnx")] if command == "export" else []
    line = one_line_error(cli_inprocess(command, str(evil), *extra), 2, "never run unless you name it")
    assert spec in line and "--model-source" in line
    assert not sentinel.exists()
    assert not (tmp_path / "o.onnx").exists()


def test_the_recorded_kind_is_not_trusted(tmp_path, mlp_checkpoint):
    """A spec that names a file runs nothing whatever ``kind`` claims (zoo, torchvision, hf)."""
    from sparsekit.models.checkpoint import load_checkpoint

    sentinel = tmp_path / "PWNED"
    module = _evil_module(tmp_path, sentinel)
    for kind in ("zoo", "torchvision", "hf", "factory", None):
        evil = _tampered(mlp_checkpoint, tmp_path / f"t-{kind}.pt", kind=kind, spec=f"{module}:f", args={})
        with pytest.raises(UntrustedSourceError):
            load_checkpoint(evil)
    assert not sentinel.exists()


def test_a_factory_checkpoint_needs_the_factory_named_on_the_command_line(tmp_path, factory_checkpoint, cli_inprocess):
    ck, factory = factory_checkpoint
    refused = one_line_error(cli_inprocess("check", str(ck)), 2, "--model-source")
    assert str(factory) in refused
    allowed = cli_inprocess("check", str(ck), "--require", "*", "--model-source", f"{factory}:build")
    assert allowed.returncode == 3, allowed.stderr  # rebuilt, read and checked: the dense model is not 2:4
    assert "never run" not in allowed.stderr
    # the same factory named as the MODEL of another command is allowed too (library: trust_sources)
    from sparsekit.models.checkpoint import load_checkpoint
    from sparsekit.models.trust import trust_sources

    with trust_sources(f"{factory}:build"):
        assert load_checkpoint(ck).model is not None


def test_a_changed_factory_file_is_not_the_code_the_user_named(tmp_path, factory_checkpoint):
    """Allowed by path AND content: the file is hashed when allowed and when run."""
    from sparsekit.models.checkpoint import load_checkpoint
    from sparsekit.models.trust import trust_sources

    ck, factory = factory_checkpoint
    original = factory.read_text()
    with trust_sources(f"{factory}:build"):
        factory.write_text(original + "\n# changed after it was allowed\n")
        try:
            with pytest.raises(UntrustedSourceError):
                load_checkpoint(ck)
        finally:
            factory.write_text(original)
    other = tmp_path / "other.py"
    shutil.copy(factory, other)
    with trust_sources(f"{other}:build"), pytest.raises(UntrustedSourceError):  # same bytes, another path
        load_checkpoint(ck)


def test_a_recipe_may_name_its_factory_but_its_run_folder_may_not_name_another(tmp_path, cli_inprocess):
    """The recipe is the user's program: its model.source runs; a tampered checkpoint in its run
    folder that names other code is refused."""
    sentinel = tmp_path / "PWNED"
    factory = tmp_path / "user_model.py"
    shutil.copy(USER_MODEL, factory)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nmodel:\n  source: {factory}:build\nsparsify:\n  method: magnitude\n")
    run = tmp_path / "run"
    first = cli_inprocess("run", str(recipe), "--out", str(run))
    assert first.returncode == 0, first.stderr
    _tampered(run / "sparse.pt", run / "sparse.pt", spec="os:system", args={"command": f"touch {sentinel}"})
    manifest = json.loads((run / "manifest.json").read_text())  # the attacker fixes the recorded hash too
    manifest["stages"]["sparsify"]["outputs"]["sparse.pt"] = hashlib.sha256((run / "sparse.pt").read_bytes()).hexdigest()
    (run / "manifest.json").write_text(json.dumps(manifest))
    recipe.write_text(recipe.read_text() + "export:\n  precisions: [fp32]\n")
    last_line_error(cli_inprocess("run", str(recipe), "--out", str(run)), "never run unless you name it")
    assert not sentinel.exists()


# ---- Hugging Face remote code ------------------------------------------------------------------------


def _remote_code_folder(root: Path, sentinel: Path) -> Path:
    """A save_pretrained-like folder whose config names its own Python (auto_map); importing that
    Python creates ``sentinel``."""
    from safetensors.torch import save_file

    folder = root / "remote"
    folder.mkdir()
    touch = f"import pathlib\npathlib.Path({str(sentinel)!r}).touch()\n"
    (folder / "configuration_evil.py").write_text(touch + "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil-test'\n    def __init__(self, image_size=4, num_channels=1, **kw):\n        self.image_size, self.num_channels = image_size, num_channels\n        super().__init__(**kw)\n")
    (folder / "modeling_evil.py").write_text(
        touch + "import torch\nfrom transformers import PreTrainedModel\nfrom .configuration_evil import EvilConfig\n"
        "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n    def __init__(self, config):\n        super().__init__(config)\n        self.lin = torch.nn.Linear(16, 16)\n        self.post_init()\n"
        "    def forward(self, pixel_values):\n        return self.lin(pixel_values.flatten(1))\n"
    )
    config = {"model_type": "evil-test", "architectures": ["EvilModel"], "image_size": 4, "num_channels": 1,
              "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"lin.weight": torch.zeros(16, 16), "lin.bias": torch.zeros(16)}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_remote_code_never_runs_without_the_flag_and_never_prompts(tmp_path, cli_inprocess):
    pytest.importorskip("transformers")
    sentinel = tmp_path / "PWNED"
    folder = _remote_code_folder(tmp_path, sentinel)
    proc = cli_inprocess("analyze", f"hf:{folder}", "--json", stdin="y\ny\n")  # a "yes" waiting on stdin is never read
    line = one_line_error(proc, 2, "--trust-remote-code")
    assert "auto_map" in line
    assert proc.stdout == ""  # no prompt on stdout under --json
    assert not sentinel.exists()


def test_remote_code_runs_with_the_flag(tmp_path, cli_inprocess):
    pytest.importorskip("transformers")
    sentinel = tmp_path / "PWNED"
    folder = _remote_code_folder(tmp_path, sentinel)
    proc = cli_inprocess("analyze", f"hf:{folder}", "--json", "--trust-remote-code")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert any(layer["name"].endswith("lin") for layer in report["layers"])
    assert sentinel.exists()  # the user allowed the folder's code


# ---- sizes a file declares ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("bert") / "tiny"
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def _with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_a_config_declaring_a_million_layers_is_refused_at_once(tmp_path, tiny_bert_folder, cli_inprocess):
    folder = _with_config(tiny_bert_folder, tmp_path / "huge", num_hidden_layers=1_000_000)
    start = time.monotonic()
    one_line_error(cli_inprocess("analyze", f"hf:{folder}"), 2, "num_hidden_layers = 1,000,000")
    assert time.monotonic() - start < 30  # was: grew past 2 GB after 80 s without an answer


def test_a_config_within_the_size_ceilings_is_counted_on_the_meta_device(tmp_path, tiny_bert_folder, cli_inprocess):
    """64 layers of width 16384 are ~200 B parameters: refused before one weight is allocated."""
    folder = _with_config(tiny_bert_folder, tmp_path / "wide", num_hidden_layers=64, hidden_size=16384, num_attention_heads=16, intermediate_size=65536)
    line = one_line_error(cli_inprocess("analyze", f"hf:{folder}"), 2, "--max-params")
    assert "parameters" in line
    small = cli_inprocess("analyze", f"hf:{tiny_bert_folder}", "--max-params", "1000")
    one_line_error(small, 2, "more than the limit of 1,000")


@pytest.mark.parametrize("value", [10**9, -5, 64.5, "x", True, None])
def test_zoo_arguments_from_a_file_are_sizes_in_range(tmp_path, mlp_checkpoint, value):
    from sparsekit.models.checkpoint import load_checkpoint

    evil = _tampered(mlp_checkpoint, tmp_path / "t.pt", args={"hidden": value})
    with pytest.raises((ModelSourceError, ResourceLimitError)):
        load_checkpoint(evil)


def _first_linear(path: Path) -> str:
    from sparsekit.models.checkpoint import load_checkpoint

    return next(n for n, m in load_checkpoint(path).model.named_modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("change", [
    {"attrs": {"out_features": 10**9}},
    {"attrs": {"out_features": -5}},
    {"attrs": {"out_features": 64.5}},
    {"attrs": {"out_features": "64"}},
    {"shapes": {"weight": [20000, 100000]}},
    {"shapes": {"weight": [10**9, 10**9]}},
    {"shapes": {"weight": [8]}},
    {"shapes": {"not_a_tensor": [2, 2]}},
    {"attrs": {"forward": 1}},
])
def test_architecture_edits_may_only_shrink(tmp_path, mlp_checkpoint, change):
    import tracemalloc

    from sparsekit.models.checkpoint import load_checkpoint

    layer = _first_linear(mlp_checkpoint)
    evil = _tampered(mlp_checkpoint, tmp_path / "t.pt", edits=[{"kind": "resize", "modules": {layer: change}}])
    tracemalloc.start()
    try:
        with pytest.raises(ModelSourceError):
            load_checkpoint(evil)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20  # was: 8.3 GB allocated before "does not fit", or an internal error


@pytest.mark.parametrize("rank", [10**9, 0, -1, 2.5, "8"])
def test_low_rank_edits_have_ranks_in_range(tmp_path, mlp_checkpoint, rank):
    from sparsekit.models.checkpoint import load_checkpoint

    layer = _first_linear(mlp_checkpoint)
    evil = _tampered(mlp_checkpoint, tmp_path / "t.pt", edits=[{"kind": "low_rank", "layers": {layer: rank}}])
    with pytest.raises(ModelSourceError, match="rank"):
        load_checkpoint(evil)


@pytest.mark.parametrize("inputs", [
    [{"name": "input", "shape": [10**6, 10**6], "dtype": "float32"}],
    [{"name": "input", "shape": [1, 256], "dtype": "system"}],
    [{"name": "input", "shape": ["1", 256]}],
    [{"shape": [1, 256]}],
    "input",
])
def test_recorded_inputs_are_checked_before_any_tensor_is_made(tmp_path, mlp_checkpoint, cli_inprocess, inputs):
    ck = torch.load(mlp_checkpoint, weights_only=True)
    ck["inputs"] = inputs
    torch.save(ck, tmp_path / "t.pt")
    one_line_error(cli_inprocess("analyze", str(tmp_path / "t.pt")), 2)


@pytest.mark.parametrize("value", ["1e9", "1000000000", "'64'"])
def test_recipe_task_arguments_are_checked(tmp_path, cli_inprocess, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nmodel:\n  source: mlp\ntask: digits\ntask_args:\n  image_size: {value}\nsparsify:\n  method: magnitude\nfinetune:\n  epochs: 1\n")
    proc = cli_inprocess("run", str(recipe), "--out", str(tmp_path / "run"))
    one_line_error(proc, 2, "image_size")  # refused when the recipe is read: no stage ran
    assert not (tmp_path / "run").exists()
