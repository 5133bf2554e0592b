"""Each setting is declared once: a stage's ``*Config`` is the input of its library function, the
source of its command's options and the recipe's section for that stage."""

from __future__ import annotations

import argparse
import typing

import pytest

from sparsekit.backends.spec import BuildSpec, parse_shapes
from sparsekit.bench.config import BenchConfig
from sparsekit.cli.config_args import cli_fields, config_from_args, flags_of
from sparsekit.cli.main import build_parser
from sparsekit.export.config import ExportConfig
from sparsekit.prune.config import PruneConfig
from sparsekit.recipe.schema import Recipe
from sparsekit.recover.config import FinetuneConfig
from sparsekit.sparsify.config import SparsifyConfig

STAGES = [("sparsify", SparsifyConfig, "sparsify"), ("export", ExportConfig, "export"), ("prune", PruneConfig, "prune"), ("finetune", FinetuneConfig, "finetune"), ("bench", BenchConfig, None),
          ("build", BuildSpec, None)]
"""(command, config, recipe section; None: the stage has no recipe section)."""


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _choices(annotation) -> list | None:
    annotation = typing.get_args(annotation)[0] if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType) else annotation
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else None


@pytest.mark.parametrize("command, config, section", STAGES)
def test_the_command_line_and_the_recipe_take_the_same_settings(command, config, section):
    parser = _subparser(command)
    by_dest = {a.dest: a for a in parser._actions}
    for name, field in cli_fields(config).items():
        action = by_dest.get(name)
        assert action is not None, f"{command}: no option for {config.__name__}.{name}"
        assert action.option_strings[0] == flags_of(name, field)[0]
        assert action.default is None or action.default is False, f"{command} --{name}: a default of its own ({action.default!r}) would drift from the config's"
        if action.choices is not None:
            assert list(action.choices) == _choices(field.annotation)
    # no hand-written option shadows a setting under another name
    settings = {flags_of(n, f)[0] for n, f in cli_fields(config).items()}
    hand_written = {s for a in parser._actions for s in a.option_strings if a.dest not in config.model_fields}
    assert not settings & hand_written
    # the recipe's section is the very same class
    if section is not None:
        assert typing.get_args(Recipe.model_fields[section].annotation)[0] is config


@pytest.mark.parametrize("command, config, section", STAGES)
def test_defaults_come_from_the_config(command, config, section):
    argv = ["model.onnx"] if command in ("bench", "build") else ["mlp", "-o", "x.pt", *(["--task", "digits"] if command == "finetune" else [])]
    args = _subparser(command).parse_args(argv)
    assert config_from_args(args, config) == config()


def test_a_bad_value_names_its_option():
    from sparsekit.errors import SparsekitError

    args = _subparser("prune").parse_args(["mlp", "-o", "x.pt", "--ratio", "1.5"])
    with pytest.raises(SparsekitError, match="invalid --ratio"):
        config_from_args(args, PruneConfig)


def test_options_parse_into_the_config():
    args = _subparser("sparsify").parse_args(["mlp", "-o", "x.pt", "--method", "sparsegpt", "--exclude", "a", "--exclude", "b", "--permute"])
    config = config_from_args(args, SparsifyConfig)
    assert (config.method, config.exclude, config.permute, config.include) == ("sparsegpt", ["a", "b"], True, ["*"])
    args = _subparser("prune").parse_args(["mlp", "-o", "x.pt", "--schedule", "0.25,0.5", "--global", "--granularity", "channel"])
    config = config_from_args(args, PruneConfig)
    assert config.schedule == [0.25, 0.5] and config.global_ranking
    args = _subparser("export").parse_args(["mlp", "-o", "x", "--precision", "all"])
    assert config_from_args(args, ExportConfig).precisions == ["fp32", "fp16", "int8"]


def test_registered_precisions_are_the_ones_the_config_offers():
    from sparsekit.export.config import PRECISION_NAMES
    from sparsekit.export.precisions import PRECISIONS
    from sparsekit.sparsify.config import MethodName
    from sparsekit.sparsify.methods import METHODS

    assert tuple(PRECISIONS) == PRECISION_NAMES
    assert typing.get_args(MethodName) == tuple(METHODS)


def test_build_options_parse_into_the_build_spec():
    from sparsekit.cli.cmd_build import build_spec_from_args

    argv = ["m.onnx", "--backend", "tensorrt-rtx", "--sparse", "on", "--shapes", "input:1x8,4x8,8x8", "--workspace-mib", "1024", "--opt-level", "5",
            "--hardware-compat", "ampere_plus", "--no-timing-cache", "--compute-capability", "8.9,8.6", "--compute-capability", "8.6"]
    spec = build_spec_from_args(_subparser("build").parse_args(argv))
    assert spec == BuildSpec(backend="tensorrt-rtx", sparse=True, shapes=parse_shapes(["input:1x8,4x8,8x8"]), workspace_mib=1024, opt_level=5,
                             hardware_compat="ampere_plus", timing_cache=False, compute_capabilities=("8.6", "8.9"))
    for sparse in ("both", "off"):
        assert build_spec_from_args(_subparser("build").parse_args(["m.onnx", "--sparse", sparse])) == BuildSpec()
    assert _subparser("build").parse_args(["m.onnx"]).sparse == "both"


@pytest.mark.parametrize("argv, message", [
    (["--opt-level", "6"], "invalid --opt-level"),
    (["--workspace-mib", "8"], "invalid --workspace-mib"),
    (["--compute-capability", "9.0"], "unknown compute capability 9.0"),
    (["--shapes", "input:1x8,2x8"], "cannot read shape profile"),
])
def test_a_bad_build_option_names_itself(argv, message):
    from sparsekit.cli.cmd_build import build_spec_from_args
    from sparsekit.errors import SparsekitError

    with pytest.raises(SparsekitError, match=message):
        build_spec_from_args(_subparser("build").parse_args(["m.onnx", *argv]))
