"""Process groups whose leader has exited and left a child behind, as an ``mlflow server``
CLI parent that died before its uvicorn worker would; and a process's state read from /proc
independently of the code under test."""

from __future__ import annotations

import subprocess
from pathlib import Path


def orphaning_group() -> tuple[subprocess.Popen[bytes], int]:
    """(the exited leader, its still running child) of a new session."""
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 120 & echo $!; exit 0"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert leader.stdout is not None
    orphan = int(leader.stdout.readline())
    leader.wait()
    return leader, orphan


def state(pid: int) -> str:
    """The process's state letter ("R", "S", "Z", ...), or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
