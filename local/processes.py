"""Whether the embedded platform's processes still run.

A process that has exited but was never waited for is a zombie: ``kill(pid, 0)`` still
succeeds on it. Orphans are reparented to PID 1, which in some containers (these machines
among them) never reaps them, so a zombie can stay for ever. Where /proc exists its state is
read to tell; elsewhere (macOS) init reaps orphans and the signal check is enough.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def is_running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    fields = _stat(PROC / str(pid))
    return fields is None or fields[0] != "Z"


def group_running(group: int) -> bool:
    """A member of process group ``group`` exists and is not a zombie."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    if not PROC.is_dir():
        return True
    return any(
        (fields := _stat(entry)) is not None and int(fields[2]) == group and fields[0] != "Z"
        for entry in PROC.iterdir()
        if entry.name.isdigit()
    )


def _stat(entry: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (state, parent, process group, ...);
    None without /proc or once the process is gone."""
    try:
        # The command is in parentheses and may itself hold spaces or ")".
        return (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
