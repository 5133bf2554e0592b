"""Build specs and service settings: a refusal names the field and the values it allows, and
absurd values (a 1e30 MiB workspace, a batch of 1e15) are refused."""

from __future__ import annotations

import pytest

from sparsekit.backends.spec import MAX_DIM, MAX_WORKSPACE_MIB
from sparsekit.errors import BuildSpecError
from sparsekit.service.validation import build_spec_from


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ('{"workspace_mib": 1e30}', ["workspace_mib = 1e+30", f"from 16 to {MAX_WORKSPACE_MIB}"]),
        ('{"workspace_mib": 1000000000000000000000000000000}', ["workspace_mib", f"from 16 to {MAX_WORKSPACE_MIB}"]),
        ('{"shapes": {"input": {"min": [1, 8], "opt": [8, 8], "max": [1e15, 8]}}}', ["shapes.input.max[0]", f"from 1 to {MAX_DIM}"]),
        ('{"shapes": {"input": {"min": [1, 1, 1, 1, 1, 1, 1, 1, 1], "opt": [1], "max": [1]}}}', ["shapes.input.min", "1 to 8 items"]),
        ('{"shapes": {"input": {"min": [1], "opt": [1], "max": [1], "maxx": [2]}}}', ["unknown field 'shapes.input.maxx'", "allowed fields: max, min, opt"]),
        ('{"opt_level": 9}', ["opt_level = 9", "from 0 to 5"]),
        ('{"backend": "tensorrtt"}', ["backend = 'tensorrtt'", "'onnxruntime'"]),
        ('{"worksapce_mib": 64}', ["unknown field 'worksapce_mib'", "workspace_mib"]),
        ('{"backend": "onnxruntime"', ["not valid JSON"]),
        ("[1, 2]", ["must be a JSON object"]),
    ],
)
def test_spec_errors_name_the_field_and_what_it_allows(spec, expected):
    with pytest.raises(BuildSpecError) as info:
        build_spec_from(spec)
    message = info.value.problem
    assert "validation error for" not in message and "\n" not in message
    for part in expected:
        assert part in message, message


def test_valid_spec_still_passes_and_bounds_do_not_change_its_identity():
    spec = build_spec_from('{"backend": "onnxruntime", "workspace_mib": 1048576, "shapes": {"x": {"min": [1, 3], "opt": [8, 3], "max": [1048576, 3]}}}')
    assert spec.workspace_mib == MAX_WORKSPACE_MIB and spec.shapes["x"].max == (MAX_DIM, 3)
    assert build_spec_from(spec.canonical_json()).sha256() == spec.sha256()


def test_serve_refuses_out_of_range_settings_in_one_line(cli, tmp_path):
    proc = cli("serve", "--port", "0", "--state-dir", str(tmp_path / "s"), "--job-timeout", "1e12")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "--job-timeout" in line and "604800" in line
    proc = cli("serve", "--port", "0", "--state-dir", str(tmp_path / "s"), "--max-concurrent-uploads", "0")
    assert proc.returncode == 2 and "--max-concurrent-uploads" in proc.stderr and "from 1 to 1024" in proc.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was created


def test_submit_refuses_a_bad_spec_and_an_unwritable_download_folder_before_uploading(cli, tmp_path, small_onnx):
    nowhere = "http://127.0.0.1:9"  # nothing listens: any contact with a server would fail differently
    proc = cli("submit", str(small_onnx[0]), "--server", nowhere, "--spec", '{"backend": "onnxruntime", "workspace_mib": 1e30}')
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "workspace_mib = 1e+30" in proc.stderr and "cannot reach" not in proc.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli("submit", str(small_onnx[0]), "--server", nowhere, "--backend", "onnxruntime", "--wait", "--download", str(blocker / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "a-file" in proc.stderr and "cannot reach" not in proc.stderr  # the download folder is named, no server was contacted
