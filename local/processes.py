"""The embedded platform's processes: started, stopped, and whether they still run.

Every service is started through a lifeline (``local/lifeline.py``): in a session of its
own, so a terminal's Ctrl-C reaches the platform only, and stopped with its whole process
group when the platform stops it or dies.

A process that has exited but was never waited for is a zombie: ``kill(pid, 0)`` still
succeeds on it. Orphans are reparented to PID 1, which in some containers (these machines
among them) never reaps them, so a zombie can stay for ever. Where /proc exists its state is
read to tell; elsewhere (macOS) init reaps orphans and the signal check is enough.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

PROC = Path("/proc")
LIFELINE = Path(__file__).resolve().parent / "lifeline.py"
#: How long a service has to stop on SIGTERM before what is left of it is killed.
STOP_GRACE_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn(
    command: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace_seconds: float = STOP_GRACE_SECONDS,
) -> subprocess.Popen[bytes]:
    """``command`` under a lifeline owned by this process, its output appended to ``log``.
    The returned process is the lifeline: it exits with the service's status, and
    :func:`stop_process` stops the service's whole group through it."""
    lifeline = [sys.executable, "-I", str(LIFELINE), str(os.getpid()), str(grace_seconds)]
    with log.open("ab") as stream:
        return subprocess.Popen(  # noqa: S603 - our interpreter, our lifeline, the caller's command
            [*lifeline, *command],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,  # out of the terminal's process group
        )


def stop_process(
    process: subprocess.Popen[bytes], grace_seconds: float = STOP_GRACE_SECONDS
) -> None:
    """Stop a service started by :func:`spawn` and wait for it: its lifeline stops the
    service's group (SIGTERM, then SIGKILL after the grace period). A lifeline that does not
    return in time is killed with its group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=2 * grace_seconds + 5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def is_running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    fields = _stat(PROC / str(pid))
    return fields is None or fields[0] != "Z"


def is_platform(pid: int) -> bool:
    """``pid`` runs and is an ``mlops`` process (not another that took a dead platform's
    pid); without /proc, any running process counts."""
    if not is_running(pid):
        return False
    try:
        return b"mlops" in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return not PROC.is_dir()


def group_running(group: int, excluding: int | None = None) -> bool:
    """A member of process group ``group`` (other than ``excluding``) exists and is not a
    zombie."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    if not PROC.is_dir():
        return excluding is None
    return bool(group_members(group, excluding))


def group_members(group: int, excluding: int | None = None) -> list[int]:
    """The processes of ``group`` (but ``excluding``) that run, from /proc (none without)."""
    return [pid for pid, fields in _running() if int(fields[2]) == group and pid != excluding]


def children_of(pid: int) -> list[int]:
    """The running children of ``pid``, from /proc (none without)."""
    return [child for child, fields in _running() if int(fields[1]) == pid]


def _running() -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc stat fields) of every process that is not a zombie."""
    if not PROC.is_dir():
        return
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(entry)) is not None and fields[0] != "Z":
            yield int(entry.name), fields


def _stat(entry: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command (state, parent, process group, ...);
    None without /proc or once the process is gone."""
    try:
        # The command is in parentheses and may itself hold spaces or ")".
        return (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def lifelines_of(owner: int) -> list[int]:
    """The lifelines (``spawn``) still running for a platform process ``owner``, from /proc
    (none where there is no /proc: there, nothing can tell them)."""
    if not PROC.is_dir():
        return []
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # [python, -I, lifeline.py, owner, grace, command...]
        ours = argv[2:4] == [str(LIFELINE).encode(), str(owner).encode()]
        if ours and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def stop_lifelines(owner: int, timeout_seconds: float = 2 * STOP_GRACE_SECONDS + 5) -> list[int]:
    """Stop what a dead platform ``owner`` left running (its lifelines stop their services'
    groups); returns the lifelines that were still running."""
    left = lifelines_of(owner)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while any(is_running(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for them to stop their services
    return left
