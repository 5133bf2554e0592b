"""Single cases the fuzz suite found, kept as ordinary (fast, unmarked) tests."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import one_line_error


def test_a_recipe_nested_too_deeply_for_the_yaml_parser_is_one_line(tmp_path, cli_inprocess):
    """Was: 'internal error: RecursionError' (PyYAML parses nested collections recursively)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nmodel: {source: mlp}\nk: " + "[" * 2000 + "]" * 2000 + "\n")
    one_line_error(cli_inprocess("run", str(recipe), "--out", str(tmp_path / "run")), 2, "nests lists or mappings too deeply")
    assert not (tmp_path / "run").exists()
