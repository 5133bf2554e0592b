import pytest

from sparsekit.backends.spec import BuildSpec, ShapeProfile, parse_shapes
from sparsekit.errors import SparsekitError


def test_parse_shapes():
    shapes = parse_shapes(["input:1x3x32x32,8x3x32x32,32x3x32x32", "ids:4x128"])
    assert shapes["input"].opt == (8, 3, 32, 32)
    assert shapes["ids"].min == shapes["ids"].max == (4, 128)
    for bad in ["input", "input:1x3,2x3", "input:8x3,4x3,16x3", ":1x3"]:
        with pytest.raises(SparsekitError):
            parse_shapes([bad])


def test_dense_and_sparse_specs_differ_only_in_the_flag():
    spec = BuildSpec(shapes={"input": ShapeProfile(min=(1, 3), opt=(4, 3), max=(8, 3))}, opt_level=4)
    dense, sparse = spec.with_sparse(False), spec.with_sparse(True)
    a, b = dense.model_dump(), sparse.model_dump()
    assert {k for k in a if a[k] != b[k]} == {"sparse"}
    assert dense.sha256() != sparse.sha256()
    assert BuildSpec.model_validate_json(dense.canonical_json()).sha256() == dense.sha256()


def test_spec_is_strict():
    with pytest.raises(ValueError):
        BuildSpec(spars=True)
    with pytest.raises(ValueError):
        BuildSpec(opt_level=9)
