"""A process or group that only zombies are left of is not running (PID 1 here never reaps
orphans, so their zombies stay)."""

from __future__ import annotations

import os
import signal
import subprocess

from local.processes import group_running, is_running
from tests.local.orphans import orphaning_group, state


def test_a_group_whose_members_are_only_zombies_is_not_running() -> None:
    leader, orphan = orphaning_group()
    assert group_running(leader.pid)  # the orphan still runs
    os.kill(orphan, signal.SIGKILL)
    while state(orphan) not in ("Z", "gone"):  # the kill lands; PID 1 may never reap it
        os.sched_yield()
    assert not group_running(leader.pid)


def test_a_child_that_exited_unwaited_is_not_running() -> None:
    child = subprocess.Popen(["/bin/sh", "-c", "exit 0"])
    while state(child.pid) != "Z":  # exited; this process has not waited for it yet
        os.sched_yield()
    assert not is_running(child.pid)
    child.wait()
    assert not is_running(child.pid)


def test_a_running_process_is_running() -> None:
    assert is_running(os.getpid()) and group_running(os.getpgid(0))
