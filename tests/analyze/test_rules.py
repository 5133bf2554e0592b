import pytest

from sparsekit.analyze.rules import amdahl_bound, likely_wins, modelopt_magnitude, modelopt_sparsegpt, trt_eligible


def test_rgb_stem_is_never_eligible():
    v = trt_eligible("Conv2d", (64, 3, 7, 7), 1)
    assert not v.ok and "multiple of 4" in v.reason


@pytest.mark.parametrize("kwargs, ok", [({}, True), ({"groups": 32}, False), ({"constant": False}, False), ({"dtype": "int32"}, False)])
def test_trt_eligibility(kwargs, ok):
    assert trt_eligible("Conv", (64, 64, 3, 3), 1, **kwargs).ok is ok


def test_modelopt_shape_rules():
    assert modelopt_magnitude("Linear", (16, 32)).ok
    assert not modelopt_magnitude("Linear", (10, 32)).ok  # out % 8
    assert not modelopt_magnitude("Linear", (16, 24)).ok  # in % 16
    assert modelopt_sparsegpt("Linear", (12, 24)).ok
    assert not modelopt_magnitude("Conv3d", (16, 16, 3, 3, 3)).ok
    assert "not in TensorRT's layout" in modelopt_sparsegpt("Conv2d", (64, 64, 3, 3)).reason


def test_likely_wins_counts_kernel_area():
    assert not likely_wins((64, 64, 1, 1), 1).ok
    assert likely_wins((256, 64, 3, 3), 1).ok  # 64 * 9 = 576 reduction
    assert likely_wins((1024, 768), 0).ok  # MatMul B [K, N]
    assert not likely_wins((1024, 8), 1).ok


def test_amdahl_bound():
    assert amdahl_bound(0.0) == 1.0
    assert amdahl_bound(1.0) == 2.0
    assert amdahl_bound(0.5) == pytest.approx(1 / 0.75)
    assert amdahl_bound(1.0, kernel_speedup=1.5) == pytest.approx(1.5)


def test_likely_win_is_never_claimed_for_a_gemm_of_a_few_rows():
    from sparsekit.analyze.rules import MIN_GEMM_ROWS, likely_wins

    big = (4096, 4096)
    assert likely_wins(big, 1).ok and likely_wins(big, 1, rows=16384).ok
    tiny = likely_wins(big, 1, rows=4)
    assert not tiny.ok and "4 rows" in tiny.reason
    assert not likely_wins(big, 1, rows=MIN_GEMM_ROWS - 1).ok and likely_wins(big, 1, rows=MIN_GEMM_ROWS).ok
