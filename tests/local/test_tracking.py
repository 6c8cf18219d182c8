"""Stopping a tracking server stops its whole process group, even when the CLI parent has
already exited and left its worker behind (the worker is then an orphan of PID 1)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from local.tracking import TrackingServer, _group_alive


def _orphaning_group() -> tuple[subprocess.Popen[bytes], int]:
    """A session whose leader has exited, leaving one child running (as a CLI parent that
    died before its uvicorn worker would)."""
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 120 & echo $!; exit 0"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert leader.stdout is not None
    orphan = int(leader.stdout.readline())
    leader.wait()
    return leader, orphan


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_group_whose_members_are_only_zombies_is_not_alive() -> None:
    leader, orphan = _orphaning_group()
    assert _group_alive(leader.pid)  # the orphan still runs
    os.kill(orphan, signal.SIGKILL)
    while _state(orphan) not in ("Z", "gone"):  # the kill lands; PID 1 may never reap it
        os.sched_yield()
    assert not _group_alive(leader.pid)


def test_stop_ends_the_worker_its_parent_left_behind(tmp_path: Path) -> None:
    leader, orphan = _orphaning_group()
    server = TrackingServer(leader, 0, tmp_path / "mlflow.log", key="tenant-contoso")
    server.stop(grace_seconds=5)
    assert _state(orphan) in ("Z", "gone")
    assert not _group_alive(leader.pid)
