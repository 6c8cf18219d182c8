"""Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread (tests, `mlops up`)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from local.processes import free_port
from tenancy.errors import DependencyError


class BackgroundServer:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # nothing proxies loopback; its middleware costs per request
            access_log=False,
            timeout_graceful_shutdown=5,  # stopping is bounded: open connections are cut
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 15) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DependencyError(f"the server on port {self.port} did not start")
            time.sleep(0.02)  # polling for readiness
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
