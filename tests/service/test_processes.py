"""A recorded worker is killed only if it is still the same process (pid and start time), with
everything in its process group."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparsekit.service.processes import group_members, is_running, kill_group, process_start
from tests.service.conftest import running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process identity is read from Linux /proc")

SPAWN_CHILD_AND_SLEEP = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print('ready', flush=True); time.sleep(600)"


def test_kill_group_spares_a_reused_pid_and_kills_the_whole_group():
    leader = subprocess.Popen([sys.executable, "-c", SPAWN_CHILD_AND_SLEEP], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "ready"
        members = group_members(leader.pid)
        assert leader.pid in members and len(members) == 2
        start = process_start(leader.pid)
        assert start is not None and is_running(leader.pid, start)
        assert not kill_group(leader.pid, start + 1)  # another process that got the same pid: left alone
        assert leader.poll() is None
        assert kill_group(leader.pid, start)
        leader.wait(timeout=30)
        assert not any(running(p) for p in members), "a process of the build's group survived"
        assert not kill_group(leader.pid, start)  # gone: nothing to do
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
