"""What every fuzz case asserts, whatever file it mutated.

* The command succeeds (or, for ``check``, reports a failed 2:4 check with exit 3), or it exits 2
  with exactly one stderr line starting ``sparsekit: error:`` (``run`` prints its progress lines
  first: there the error is the last line); never "internal error", never a traceback.
* No file appears outside the case's output folder: the whole fuzz root (seeds, the case's input
  folder, the working directory and ``TMPDIR`` of the fuzz process) is snapshotted before and
  compared after; and the sentinel file every hostile payload tries to create does not exist.
* No process is spawned and no module a payload names is imported: an audit hook (installed once
  per process; audit hooks cannot be removed, so it records only while :data:`_recording` is set)
  records ``subprocess.Popen``, ``os.system``, ``os.exec``, ``os.posix_spawn``, ``os.fork``,
  ``os.spawn`` events and imports of the payload module.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SPAWN_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.spawn")
"""Audit events that start a process (``os.exec``/``os.spawn`` cover their variants by prefix)."""
PAYLOAD_MODULE = "fuzz_payload"
"""Stem of the Python file the payloads name; importing it creates the sentinel."""

_recording = False
_events: list[str] = []
_installed = False


def _audit(event: str, args: tuple) -> None:
    if not _recording:
        return
    if event.startswith(SPAWN_EVENTS):
        _events.append(f"{event}{str(args)[:200]}")
    elif event == "import" and args and PAYLOAD_MODULE in str(args[0]):
        _events.append(f"import {args[0]}")


def install_audit_hook() -> None:
    """Install the recording audit hook once in this process."""
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True


@dataclass
class Arena:
    """The fuzz root: seeds, the payload module, the sentinel, and one folder per case."""

    root: Path
    sentinel: Path = field(init=False)
    payload: Path = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.sentinel = self.root / "PWNED"
        self.payload = self.root / f"{PAYLOAD_MODULE}.py"
        touch = f"import pathlib\npathlib.Path({str(self.sentinel)!r}).touch()\n"
        self.payload.write_text(touch + f"def f(*args, **kwargs):\n    pathlib.Path({str(self.sentinel)!r}).touch()\n")

    def fill(self, text: str) -> str:
        """``text`` with the placeholders ``{SENTINEL}``, ``{PAYLOAD}`` (the .py file) replaced."""
        return text.replace("{SENTINEL}", str(self.sentinel)).replace("{PAYLOAD}", str(self.payload))

    @contextmanager
    def case(self) -> Iterator[tuple[Path, Path]]:
        """A fresh ``(input folder, output folder)``, removed afterwards."""
        self.count += 1
        base = self.root / "cases" / str(self.count)
        inp, out = base / "in", base / "out"
        inp.mkdir(parents=True)
        out.mkdir()
        try:
            yield inp, out
        finally:
            shutil.rmtree(base, ignore_errors=True)

    @contextmanager
    def watch(self, out: Path) -> Iterator[None]:
        """Run the command inside: assert no file outside ``out``, no sentinel, no spawn, no import."""
        global _recording
        before = _snapshot(self.root, out)
        _events.clear()
        _recording = True
        try:
            yield
        finally:
            _recording = False
        created = sorted(_snapshot(self.root, out) - before)
        events, ran = list(_events), self.sentinel.exists()
        imported = [name for name in sys.modules if PAYLOAD_MODULE in name]
        self.sentinel.unlink(missing_ok=True)  # each case starts clean, whatever the last one did
        for name in imported:
            del sys.modules[name]
        assert not events, f"process spawned or payload imported: {events[:3]}"
        assert not imported, f"the payload module was imported: {imported}"
        assert not ran, "a payload ran: the sentinel file exists"
        assert not created, f"files created outside the output folder: {created[:5]}"


def _snapshot(root: Path, skip: Path) -> set[str]:
    """Relative paths of every file and folder under ``root``, ``skip`` (the output folder) excluded."""
    found = set()
    skip = str(skip)
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == skip or dirpath.startswith(skip + os.sep):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def assert_outcome(proc, command: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    """The command succeeded (an exit code in ``ok_codes``) or failed in one clear line (exit 2)."""
    err = proc.stderr
    assert "Traceback" not in err, f"traceback:\n{err[-1500:]}"
    assert "internal error" not in err, f"internal error: {err.strip().splitlines()[-1] if err.strip() else err}"
    if proc.returncode in ok_codes:
        return
    lines = [line for line in err.split("\n") if line.strip()]  # terminal lines (str.splitlines also splits at \x1c-\x1e, \x85)
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-800:]}"
    assert lines, "exit 2 without a message"
    if command != "run":
        assert len(lines) == 1, f"{len(lines)} stderr lines, not one: {err[-800:]}"
    assert lines[-1].startswith("sparsekit: error:"), f"last stderr line is not 'sparsekit: error:': {lines[-1][:300]}"
