"""Deployments for the gateway tests: tiny HTTP servers on loopback whose behaviour the
test sets (answer, fail, hang), recording the headers they were sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Upstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"  # "ok" | "fail" | "bad_request" | "hang"
        self.seen: list[dict[str, str]] = []
        self.release = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                upstream.seen.append({k.lower(): v for k, v in self.headers.items()})
                rows = body.get("data") or (body.get("input_data") or {}).get("data") or []
                if upstream.mode == "hang":
                    upstream.release.wait(timeout=30)
                status, answer = {
                    "ok": (
                        200,
                        {
                            "predictions": [upstream.name] * len(rows),
                            "probabilities": [],
                        },
                    ),
                    "fail": (500, {"error": "boom"}),
                    "bad_request": (
                        400,
                        {"error": {"code": "invalid_input", "message": "row 0 is wrong"}},
                    ),
                    "hang": (200, {"predictions": []}),
                }[upstream.mode]
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def upstreams(*names: str) -> Iterator[dict[str, Upstream]]:
    started = {name: Upstream(name) for name in names}
    for upstream in started.values():
        upstream.thread.start()
    try:
        yield started
    finally:
        for upstream in started.values():
            upstream.release.set()
            upstream.server.shutdown()
            upstream.server.server_close()
