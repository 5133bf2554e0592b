"""Speed tables: read from the committed GPU result and from select files, interpolated in M,
nearest shape otherwise, and one line for a file that is not a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsekit.errors import SparsekitError
from sparsekit.plan.speed_table import SpeedRow, SpeedTable, load_speed_table

H200 = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "nvidia-h200" / "gpu_suite.json"


def _table(*rows) -> SpeedTable:
    return SpeedTable("t.json", [SpeedRow(*r) for r in rows])


def test_ratio_is_linear_in_log_m_between_measured_rows():
    t = _table((4096, 768, 768, "float16", 0.4), (16384, 768, 768, "float16", 0.8))
    assert t.estimate(4096, 768, 768).ratio == pytest.approx(0.4) and t.estimate(4096, 768, 768).how == "measured"
    mid = t.estimate(8192, 768, 768)  # log2 8192 is halfway between log2 4096 and log2 16384
    assert mid.ratio == pytest.approx(0.6) and mid.how.startswith("interpolated in M")
    assert t.estimate(5793, 768, 768).ratio == pytest.approx(0.4 + 0.4 * 0.25, abs=1e-3)


def test_outside_the_measured_m_the_nearest_m_is_used_and_said():
    t = _table((4096, 768, 768, "float16", 0.4), (16384, 768, 768, "float16", 0.8))
    low, high = t.estimate(64, 768, 768), t.estimate(65536, 768, 768)
    assert (low.ratio, high.ratio) == (pytest.approx(0.4), pytest.approx(0.8))
    assert "outside the measured M 4096..16384" in low.how and "nearest M 16384" in high.how


def test_an_unmeasured_shape_takes_the_nearest_measured_shape_of_its_dtype():
    t = _table((4096, 768, 768, "float16", 0.4), (4096, 1024, 4096, "float16", 1.2), (4096, 384, 384, "bfloat16", 3.0))
    e = t.estimate(4096, 384, 384)  # nearer 768x768 than 1024x4096 in log space; the bf16 row is another dtype
    assert e.ratio == pytest.approx(0.4) and e.how.startswith("nearest shape 768x768")
    assert t.estimate(4096, 1024, 3072).how.startswith("nearest shape 1024x4096")
    with pytest.raises(SparsekitError, match="no float32 GEMM rows"):
        t.estimate(4096, 768, 768, "float32")


def test_the_ideal_table_is_2x_everywhere():
    t = SpeedTable.ideal()
    assert t.is_ideal and t.estimate(1, 16, 16).ratio == 2.0 and t.estimate(1, 16, 16).how == "ideal"


def test_the_committed_h200_result_reads_as_a_table_of_its_gemm_rows():
    t = load_speed_table(H200)
    fp16 = {(r.m, r.k, r.n): r.ratio for r in t.rows if r.dtype == "float16"}
    suite = json.loads(H200.read_text())
    units = next(j for j in suite["jobs"] if j["name"] == "gemm")["units"]
    assert {(u["result"]["m"], u["result"]["k"], u["result"]["n"]): u["result"]["speedup"]["ratio"] for u in units}.items() <= fp16.items()
    assert "bfloat16" in t.dtypes()
    assert t.estimate(4096, 768, 768).ratio < 1  # the measured 2:4 qkv GEMM of BERT-base was slower than dense


def test_a_select_file_is_a_table_with_its_top_level_dtype(tmp_path):
    p = tmp_path / "sel.json"
    p.write_text(json.dumps({"dtype": "bfloat16", "measurements": [{"name": "a", "m": 64, "k": 128, "n": 256, "speedup": {"ratio": 1.3, "low": 1.2, "high": 1.4}}, {"name": "b", "m": 64, "k": 8, "n": 8, "decision": "exclude", "reason": "too small"}]}))
    t = load_speed_table(p)
    assert t.rows == [SpeedRow(64, 128, 256, "bfloat16", 1.3, 1.2, 1.4)]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe\x00", "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
        (json.dumps({"rows": [{"m": 1, "k": 2, "n": 3, "speedup": {"ratio": "fast"}}, {"m": True, "k": 2, "n": 3, "speedup": {"ratio": 1.0}}, {"m": 2**40, "k": 2, "n": 3, "speedup": {"ratio": 1.0}}, {"m": 1, "k": 2, "n": 3, "speedup": {"ratio": float("inf")}}]}).encode(), "holds no GEMM measurement"),
    ],
)
def test_a_file_that_is_not_a_speed_table_is_one_line(tmp_path, content, message):
    p = tmp_path / "t.json"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(SparsekitError, match=message) as info:
        load_speed_table(p)
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_a_bad_speed_table_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, cli):
    bad = tmp_path / "t.json"
    bad.write_text("[]")
    r = cli("plan", "--task", "digits", "--speed", str(bad), "-o", str(tmp_path / "out"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "holds no GEMM measurement" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_table_without_the_asked_dtype_is_refused_before_any_work(tmp_path, cli):
    p = tmp_path / "sel.json"
    p.write_text(json.dumps({"dtype": "bfloat16", "measurements": [{"m": 8, "k": 64, "n": 64, "speedup": {"ratio": 1.3}}]}))
    r = cli("plan", "--task", "digits", "--speed", str(p), "--dtype", "float16", "-o", str(tmp_path / "out"))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "no float16 GEMM rows (it has bfloat16)" in lines[0] and "--dtype bfloat16" in lines[0]
    assert not (tmp_path / "out").exists()
