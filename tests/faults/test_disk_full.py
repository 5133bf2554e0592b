"""A full disk, for real: each command runs in its own user and mount namespace (``unshare -rm``, no
root needed) with a small tmpfs mounted over its output folder, and lists what it left there
before the namespace goes. Writes that fail for lack of room end in one DiskFullError line naming
the disk and the file; the temporaries and the output folders the command created are removed,
folders that existed before stay."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys

import pytest

from sparsekit.errors import DiskFullError

MARK = "@@left"


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged user and mount namespaces (unshare -rm) to mount a small tmpfs")


def on_small_disk(disk, size: str, *args: str, existing: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``sparsekit *args`` with a tmpfs of ``size`` mounted at folder ``disk`` (the folders
    ``existing`` made in it first); returns the process and what was left on the tmpfs afterwards."""
    disk.mkdir(parents=True, exist_ok=True)
    made = "".join(f' && mkdir -p "$0/{sub}"' for sub in existing)
    script = f'mount -t tmpfs -o size={size} tmpfs "$0"{made} && shift && "$@"; rc=$?; echo {MARK}; (cd "$0" && find . -mindepth 1 | sort); exit $rc'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(disk), "x", sys.executable, "-m", "sparsekit", *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    left = proc.stdout.split(MARK, 1)[1].split() if MARK in proc.stdout else ["<no listing>"]
    return proc, left


def disk_full_line(proc: subprocess.CompletedProcess, disk, target) -> str:
    """The single error line of a command that met the full disk ``disk`` writing ``target``."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sparsekit:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert f"the disk holding '{disk}" in lines[0] and f"while writing '{target}" in lines[0] and "No space left on device" in lines[0], lines[0]
    assert "internal error" not in lines[0] and "fix: free space on that disk" in lines[0]
    return lines[0]


@needs_namespaces
def test_prune_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    proc, left = on_small_disk(disk, "64k", "prune", "cnn", "-o", str(disk / "new" / "p.pt"))
    disk_full_line(proc, disk, disk / "new" / "p.pt")
    assert left == [], "the temporary checkpoint and the folder the command made are removed"


@needs_namespaces
def test_the_prune_loop_on_a_full_disk_removes_its_work_folder_and_keeps_the_users(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "keep" / "p.pt"
    proc, left = on_small_disk(disk, "64k", "prune", "--task", "digits", "--schedule", "0.25", "--epochs", "1", "-o", str(out), existing=("keep",))
    disk_full_line(proc, disk, out.parent / "p.pt.steps")
    assert left == ["./keep"], left


@needs_namespaces
def test_finetune_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "new" / "f.pt"
    proc, left = on_small_disk(disk, "64k", "finetune", "--task", "digits", "--epochs", "1", "-o", str(out))
    disk_full_line(proc, disk, out)  # the training state next to the output is the first file written
    assert left == [], left


def test_a_file_size_limit_is_reported_as_file_too_large(tmp_path):
    """RLIMIT_FSIZE makes a write fail with EFBIG (Python ignores SIGXFSZ): the same clean stop."""
    out = tmp_path / "p.pt"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, "-m", "sparsekit", "prune", "cnn", "-o", str(out)], capture_output=True, text=True, timeout=600, preexec_fn=limit)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sparsekit:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert f"cannot write '{out}': File too large" in lines[0] and "ulimit -f" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_remove_the_folders_they_made_and_keep_the_others(tmp_path, monkeypatch):
    """The rename that publishes the file fails with a real ENOSPC from the OS call's place."""
    from sparsekit import _io

    kept = tmp_path / "kept"
    kept.mkdir()
    target = kept / "a" / "b" / "out.json"
    _io.ensure_writable_target(target)
    assert (kept / "a" / "b").is_dir()
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("out.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(_io.os, "replace", full)
    with pytest.raises(DiskFullError, match=r"is full while writing .*out\.json' \(No space left on device; \d+"):
        _io.write_json_atomic(target, {"x": 1})
    assert kept.is_dir() and list(kept.iterdir()) == []
    other = kept / "c" / "d" / "out.json"
    _io.ensure_writable_target(other)
    (kept / "c" / "mine.txt").write_text("x")  # a folder this process made, holding something now: it stays
    with pytest.raises(DiskFullError):
        _io.write_json_atomic(other, {"x": 1})
    assert sorted(p.name for p in (kept / "c").iterdir()) == ["mine.txt"]


def test_a_write_error_that_is_not_a_full_disk_stays_what_it_was(tmp_path):
    from sparsekit._io import atomic_path

    with pytest.raises(RuntimeError, match="unrelated"), atomic_path(tmp_path / "f.bin"):
        raise RuntimeError("unrelated")
    assert list(tmp_path.iterdir()) == []
