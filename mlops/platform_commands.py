"""`mlops up`, `mlops status`, `mlops down`: the embedded platform from the command line.

``up`` runs in the foreground until interrupted (Ctrl-C or SIGTERM, which ``down`` sends)
and then stops every process it started. While it runs, ``<data-dir>/platform.json`` says
where everything is and which process to signal.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tenancy.errors import DependencyError, NotFoundError
from tenancy.load import load_stack

STATE_FILE = "platform.json"


def default_data_dir(root: Path, stack: str) -> Path:
    return root / ".mlops" / stack


def up(root: Path, stack: str, data_dir: Path, *, timers: bool = True) -> int:
    from local.platform import EmbeddedPlatform  # noqa: PLC0415 - heavy

    spec = load_stack(stack, root)
    started = time.monotonic()
    platform = EmbeddedPlatform(spec, stack, data_dir).start(timers=timers)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        status = platform.status()
        status["pid"] = os.getpid()
        status["started_in_seconds"] = round(time.monotonic() - started, 1)
        (data_dir / STATE_FILE).write_text(json.dumps(status, indent=2))
        print(json.dumps(status, indent=2), flush=True)
        print("serving; Ctrl-C (or `mlops down`) stops everything", flush=True)
        stop.wait()
    finally:
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        platform.stop()
    return 0


def running_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATE_FILE
    if not path.is_file():
        raise NotFoundError(
            f"no platform is running with data in {data_dir} (`mlops up` starts one)"
        )
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def status(data_dir: Path, show_keys: bool) -> dict[str, Any]:
    """The running platform's state, with live traffic from the gateway."""
    from adapters.local import ADMIN_TOKEN_FILE, GatewayAdmin  # noqa: PLC0415
    from local.platform import KEYS_FILE  # noqa: PLC0415

    state = running_state(data_dir)
    admin = GatewayAdmin(
        state["services"]["gateway"], (data_dir / ADMIN_TOKEN_FILE).read_text().strip()
    )
    keys = json.loads((data_dir / KEYS_FILE).read_text()) if show_keys else {}
    for tenant in state["tenants"]:
        tenant["traffic"] = admin.endpoint(tenant["endpoint"])["traffic"]
        if show_keys:
            tenant["keys"] = keys.get(tenant["id"], {})
    return state


def down(data_dir: Path, timeout_seconds: float = 60) -> int:
    state = running_state(data_dir)
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not (data_dir / STATE_FILE).exists():
            return 0
        time.sleep(0.2)  # waiting for the platform to stop, not timing anything
    raise DependencyError(f"the platform (pid {pid}) did not stop within {timeout_seconds:g} s")
