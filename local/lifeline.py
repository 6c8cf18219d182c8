"""One service of the embedded platform, alive exactly as long as the platform that started it.

    python -I lifeline.py <owner pid> <grace seconds> <command> [arguments...]

The platform starts every service (Azurite, the MLflow servers, the deployments) through a
lifeline (``local.processes.spawn``), which leads a session and process group of its own that
the service and its workers share:

- A terminal's Ctrl-C goes to the foreground process group, the platform's. The services
  are not in it, so they keep serving while the platform stops in order: collected data
  flushed first, then the services (a service that dies with the terminal's signal first
  loses what was still to be written to it).
- When the platform dies without stopping them (SIGKILL, a crash, an out-of-memory kill),
  the lifeline sees its owner gone (it is re-parented) and stops the service's group:
  nothing outlives the platform, whatever killed it.
- SIGTERM to the lifeline stops the service: SIGTERM to the group, SIGKILL to what is left
  of it after the grace period; the lifeline returns once nothing else of the group runs.
  SIGKILL to the group (``os.killpg(<lifeline pid>, SIGKILL)``) ends it all at once.
- When the service exits on its own, the lifeline stops what it left behind (workers) and
  exits with the service's status, so its owner sees the exit as the service's.

It runs under ``-I`` (nothing of the caller's environment on its path) and imports only the
standard library and ``local.processes``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: the project is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local.processes import group_members, group_running

#: How often the lifeline looks at its owner and its service.
POLL_SECONDS = 0.1


def stop_group(grace_seconds: float) -> None:
    """SIGTERM to the lifeline's group, SIGKILL to what is left after the grace period;
    returns once no other member runs (or a second grace period has passed)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the lifeline outlives its group
    _signal_others(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while group_running(os.getpgrp(), excluding=os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for the group to exit
    _signal_others(signal.SIGKILL)
    deadline = time.monotonic() + grace_seconds
    while group_running(os.getpgrp(), excluding=os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.02)  # SIGKILL is final, not instantaneous


def _signal_others(signum: signal.Signals) -> None:
    for pid in group_members(os.getpgrp(), excluding=os.getpid()):
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.kill(pid, signum)


def _exit_status(code: int) -> int:
    """A shell's convention: a service killed by signal N exits 128 + N."""
    return code if code >= 0 else 128 - code


def run(owner: int, grace_seconds: float, command: list[str]) -> int:
    requested: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: requested.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the owner stops a service
    service = subprocess.Popen(command)  # noqa: S603 - the owner's command, in our group
    while True:
        code = service.poll()
        if code is not None:
            stop_group(grace_seconds)  # what the service left behind
            return _exit_status(code)
        if requested or os.getppid() != owner:
            stop_group(grace_seconds)
            return _exit_status(service.wait())
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: lifeline.py <owner pid> <grace seconds> <command> [arguments...]")
        return 2
    return run(int(argv[0]), float(argv[1]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
