"""``export`` onto a full disk (a real small tmpfs, see tests/faults/test_disk_full.py): one
DiskFullError line naming the disk and the ONNX file, no exporter or opset hint, and neither the
stage nor the output folder the command created is left; a folder that existed before stays."""

from __future__ import annotations

from tests.faults.test_disk_full import disk_full_line, needs_namespaces, on_small_disk


@needs_namespaces
def test_export_to_a_full_disk_is_one_line_and_removes_the_folder_it_made(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "keep" / "new" / "m.onnx"
    proc, left = on_small_disk(disk, "64k", "export", "cnn", "-o", str(out), "--precision", "fp32", existing=("keep",))
    line = disk_full_line(proc, disk, out)
    assert "opset" not in line and "ONNX export failed" not in line and ".stage" not in line, line
    assert left == ["./keep"], left


@needs_namespaces
def test_export_of_several_precisions_keeps_the_files_that_were_finished(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "models"
    # 12 MiB: the fp32 file (5.3 MB, twice that while it is written) fits, the fp16 one then does not
    proc, left = on_small_disk(disk, "12m", "export", "mlp", "-o", str(out), "--precision", "fp32", "--precision", "fp16")
    disk_full_line(proc, out, out / "model.fp16.onnx")
    assert left == ["./models", "./models/model.fp32.onnx", "./models/model.fp32.report.json"], left
