"""`sparsekit bench` end to end on CPU: ONNX Runtime A/A, JSON + markdown + PNG."""

import json

import pytest


def test_bench_onnxruntime_aa(cli, exported, tmp_path):
    path = exported[("bert", "fp32")].path
    out = tmp_path / "results"
    proc = cli("bench", str(path), "--batches", "1,4", "--rounds", "4", "--round-seconds", "0.05", "--warmup", "0.05", "--store", str(tmp_path / "s"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["batch"] for r in result["results"]] == [1, 4]
    for r in result["results"]:
        assert r["dense"]["median"] > 0 and r["speedup"]["low"] <= r["speedup"]["ratio"] <= r["speedup"]["high"]
        assert len(r["dense_round_medians_ms"]) == 4
    assert 1.5 < result["amdahl"]["bound"] <= 2.0
    assert result["settings"]["timer"] == "perf_counter" and result["machine"]["cores"] >= 1
    assert "A/A" in result["notes"][0]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["onnxruntime_bert_fp32.json", "onnxruntime_bert_fp32.md", "onnxruntime_bert_fp32.png"]
    assert (out / "onnxruntime_bert_fp32.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 4 |" in (out / "onnxruntime_bert_fp32.md").read_text()


@pytest.mark.parametrize("batches", ["0", "a,b", ""])
def test_bad_batches(cli, exported, batches):
    proc = cli("bench", str(exported[("mlp", "fp32")].path), "--batches", batches)
    assert proc.returncode == 2 and "batch sizes" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_writes_only_into_its_results_folder_and_shows_rounds(cli, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = exported[("mlp", "fp32")].path
    proc = cli("bench", str(path), "--batches", "1", "--rounds", "3", "--round-seconds", "0.02", "--warmup", "0.02")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-results"]  # no engines/ in the current folder
    assert "rounds" in proc.stdout


def test_bench_loads_the_onnx_once(cli, exported, tmp_path, onnx_loads):
    """The pair build, the input spec, the precision and the Amdahl evidence share one parse of the file."""
    from pathlib import Path

    path = Path(exported[("mlp", "fp16")].path).resolve()
    proc = cli("bench", str(path), "--batches", "1", "--rounds", "3", "--round-seconds", "0.02", "--warmup", "0.02", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["precision"] == "fp16" and result["amdahl"]["sparse_layers_in_onnx"] > 0
    assert onnx_loads.count(path) == 1, onnx_loads
