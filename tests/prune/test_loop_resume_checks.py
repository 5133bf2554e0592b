"""``prune --resume`` reads ``loop.json`` as data: a tampered or foreign one is refused with one line
before anything is loaded; step checkpoints must stay inside the work folder and unchanged."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from sparsekit.cli.main import main

LOOP = ["prune", "--task", "digits", "--schedule", "0.25,0.5", "--epochs", "1", "--max-drop", "50", "--json"]


def _prune(capsys, output, work, *extra: str) -> tuple[int, str]:
    """Run the loop in-process; ``(exit status, the error line)``."""
    capsys.readouterr()
    rc = main([*LOOP, "-o", str(output), "--work-dir", str(work), *extra])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sparsekit:")]
    return rc, lines[-1] if lines else ""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A work folder of a finished two-step loop on the digits task (written by the CLI)."""
    root = tmp_path_factory.mktemp("loop")
    assert main([*LOOP, "-o", str(root / "pruned.pt"), "--work-dir", str(root / "work")]) == 0
    return root / "work"


@pytest.fixture
def work(finished, tmp_path):
    """A copy of the finished loop's work folder, to tamper with; ``(folder, loop.json payload)``."""
    folder = tmp_path / "work"
    shutil.copytree(finished, folder)
    return folder, json.loads((folder / "loop.json").read_text())


def _write(folder, state) -> None:
    (folder / "loop.json").write_text(json.dumps(state))


def test_each_step_records_its_checkpoints_sha256_and_an_untouched_folder_resumes(finished, tmp_path, capsys):
    import hashlib

    state = json.loads((finished / "loop.json").read_text())
    for entry in state["steps"]:
        assert entry["sha256"] == hashlib.sha256((finished / entry["checkpoint"]).read_bytes()).hexdigest()
    folder = tmp_path / "work"
    shutil.copytree(finished, folder)
    assert _prune(capsys, tmp_path / "again.pt", folder, "--resume") == (0, "")
    assert (tmp_path / "again.pt").is_file()


@pytest.mark.parametrize("name", ["{outside}", "../outside.pt", "sub/../../outside.pt", "escape.pt"])
def test_a_checkpoint_outside_the_work_folder_is_refused_unread(work, tmp_path, capsys, name):
    folder, state = work
    outside = tmp_path / "outside.pt"
    shutil.copy(folder / "step2.pt", outside)  # a loadable checkpoint: only the path is wrong
    (folder / "escape.pt").symlink_to(outside)
    name = name.format(outside=outside)
    state["steps"][-1]["checkpoint"] = name
    _write(folder, state)
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and f"names the checkpoint '{name}'" in line and "fix: delete the work folder, or run without --resume" in line, line
    assert not (tmp_path / "out.pt").exists()


def test_a_changed_step_checkpoint_is_refused(work, tmp_path, capsys):
    folder, _ = work
    shutil.copy(folder / "step1.pt", folder / "step2.pt")  # a valid checkpoint, not the one the step wrote
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "step2.pt' changed since the step wrote it" in line and "run without --resume" in line, line
    assert not (tmp_path / "out.pt").exists()


def test_a_loop_file_without_checksums_is_refused_with_a_restart_hint(work, tmp_path, capsys):
    folder, state = work
    for entry in state["steps"]:
        del entry["sha256"]
    _write(folder, state)
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "records no checksum" in line and "delete the work folder" in line, line


def test_a_huge_step_list_is_refused_at_once(work, tmp_path, capsys):
    folder, state = work
    state["steps"] = [state["steps"][0]] * 100_000  # 100 MB of JSON: refused by its size, unparsed
    _write(folder, state)
    start = time.perf_counter()
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "bytes, more than a loop of 2 step(s) writes" in line, line
    state["steps"] = [{}] * 100_000  # small enough to read: refused by its length
    _write(folder, state)
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "lists 100000 steps, and the schedule has 2" in line, line
    assert time.perf_counter() - start < 60


TAMPERED = {
    "steps is a string": (lambda s: s.update(steps="abc"), "'steps' entry is missing or wrong"),
    "steps missing": (lambda s: s.pop("steps"), "'steps' entry is missing or wrong"),
    "step entry not an object": (lambda s: s["steps"].__setitem__(0, [1, 2]), "step entry 1 is a list"),
    "checkpoint missing": (lambda s: s["steps"][1].pop("checkpoint"), "step entry 2 has no valid 'checkpoint'"),
    "checkpoint a number": (lambda s: s["steps"][1].update(checkpoint=7), "step entry 2 has no valid 'checkpoint'"),
    "params a string": (lambda s: s["steps"][0].update(params="many"), "step entry 1 has no valid 'params'"),
    "metrics without the metric": (lambda s: s["steps"][0].update(metrics={}), "step entry 1 has no valid 'metrics'"),
    "step number beyond the schedule": (lambda s: s["steps"][1].update(step=9), "step entry 2 is step 9"),
    "share not the schedule's": (lambda s: s["steps"][0].update(target=0.75), "the schedule's step 1 is share 0.25"),
    "accepted beyond the steps": (lambda s: s.update(accepted=7), "'accepted' is 7"),
    "accepted a string": (lambda s: s.update(accepted="2"), "'accepted' entry is missing or wrong"),
    "accepted a bool": (lambda s: s.update(accepted=True), "'accepted' entry is missing or wrong"),
    "stopped a number": (lambda s: s.update(stopped=3), "'stopped' entry is missing or wrong"),
    "stopped without a step past budget": (lambda s: s.update(stopped="x", accepted=1), "'stopped' is set"),
    "params_unpruned zero": (lambda s: s["steps"][0].update(params_unpruned=0), "zero parameter or FLOP count"),
    "sha256 not a digest": (lambda s: s["steps"][0].update(sha256="abc"), "'sha256' is not a SHA-256 digest"),
    "only a fingerprint": (lambda s: [s.pop(k) for k in list(s) if k != "fingerprint"], "'task' entry is missing or wrong"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_loop_file_is_one_line_not_an_internal_error(work, tmp_path, capsys, case):
    folder, state = work
    change, expected = TAMPERED[case]
    change(state)
    _write(folder, state)
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and line.startswith("sparsekit: error: loop file") and expected in line, line
    assert not (tmp_path / "out.pt").exists()


def test_a_loop_file_that_is_not_json_is_refused(work, tmp_path, capsys):
    folder, _ = work
    (folder / "loop.json").write_text("[" * 100_000)
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "is not readable JSON" in line, line
    (folder / "loop.json").write_text("[1, 2]")
    rc, line = _prune(capsys, tmp_path / "out.pt", folder, "--resume")
    assert rc == 2 and "holds a list, not an object" in line, line
