"""Stopping a tracking server stops its whole process group, even when the CLI parent has
already exited and left its worker behind (the worker is then an orphan of PID 1)."""

from __future__ import annotations

from pathlib import Path

from local.processes import group_running
from local.tracking import TrackingServer
from tests.local.orphans import orphaning_group, state


def test_stop_ends_the_worker_its_parent_left_behind(tmp_path: Path) -> None:
    leader, orphan = orphaning_group()
    server = TrackingServer(leader, 0, tmp_path / "mlflow.log", key="tenant-contoso")
    server.stop(grace_seconds=5)
    assert state(orphan) in ("Z", "gone")
    assert not group_running(leader.pid)
