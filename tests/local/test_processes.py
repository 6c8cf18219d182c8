"""A process or group that only zombies are left of is not running (PID 1 here never reaps
orphans, so their zombies stay); services started under a lifeline keep out of a terminal's
Ctrl-C, stop with their whole group, and never outlive the platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local.processes import group_running, is_running, spawn, stop_process
from tests.conftest import ROOT
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


# --- services under a lifeline ------------------------------------------------------------------

OWNER = """
import json, signal, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from local.processes import spawn, stop_process
interrupted = []
signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
service = spawn([sys.executable, "-c", "import time; time.sleep(300)"], Path({log!r}))
print(service.pid, flush=True)
while not interrupted:
    time.sleep(0.05)  # the terminal's Ctrl-C ends this wait
alive = service.poll() is None
stop_process(service, grace_seconds=2)
print(json.dumps({{"alive_at_ctrl_c": alive, "status": service.returncode}}), flush=True)
"""


def _owner(tmp_path: Path) -> tuple[subprocess.Popen[str], int, int]:
    """A process that starts one service, as the platform does, in a process group of its own
    (a terminal's foreground group); (it, the service's lifeline, the service)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(root=str(ROOT), log=str(tmp_path / "service.log"))],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert owner.stdout is not None
    lifeline = int(owner.stdout.readline())
    return owner, lifeline, _child_of(lifeline)


def _child_of(pid: int, timeout_seconds: float = 30) -> int:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and state(int(entry.name)) != "gone":
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError):
                    continue
                if parent == pid:
                    return int(entry.name)
        os.sched_yield()
    raise AssertionError(f"process {pid} started no child")


def _gone(pid: int, timeout_seconds: float = 30) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if state(pid) in ("Z", "gone"):
            return True
        time.sleep(0.05)  # waiting for an exit, not timing it
    return False


def test_a_terminals_ctrl_c_reaches_the_platform_not_its_services(tmp_path: Path) -> None:
    owner, _, service = _owner(tmp_path)
    os.killpg(owner.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    out, _ = owner.communicate(timeout=60)
    # The service was still serving when the platform began to stop it, in its own order.
    assert json.loads(out) == {"alive_at_ctrl_c": True, "status": 128 + signal.SIGTERM}
    assert _gone(service)


def test_a_service_dies_with_its_platform_whatever_kills_it(tmp_path: Path) -> None:
    owner, lifeline, service = _owner(tmp_path)
    os.kill(owner.pid, signal.SIGKILL)  # no handler runs: the platform stops nothing
    owner.wait()
    assert _gone(service) and _gone(lifeline)


def test_what_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(300)"
    )
    log = tmp_path / "stubborn.log"
    process = spawn([sys.executable, "-c", stubborn], log, grace_seconds=0.5)
    service = _child_of(process.pid)
    # Stopped only once it ignores SIGTERM: before, a SIGTERM would still end it.
    deadline = time.monotonic() + 30
    while "ignoring" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for the service to start, not timing it
    assert "ignoring" in log.read_text()
    stop_process(process, grace_seconds=0.5)
    assert process.returncode == 128 + signal.SIGKILL
    assert state(service) in ("Z", "gone")


def test_a_service_that_exits_leaves_nothing_behind_and_its_status(tmp_path: Path) -> None:
    """As an ``mlflow server`` CLI parent that exits before its uvicorn worker would."""
    log = tmp_path / "leaves.log"
    process = spawn(["/bin/sh", "-c", "sleep 120 & echo $!; exit 3"], log)
    assert process.wait(timeout=60) == 3
    left = int(log.read_text().split()[0])
    assert state(left) in ("Z", "gone")
