"""The lean scoring host: ``score.py``'s contract (``init()`` once per worker, then
``respond()``'s status and body per request) served by uvicorn, with nothing between the
socket and the model but the request line and the ``x-tenant-id`` header.

Two places run it, from this one file:
- the embedded platform, one process per deployment on 127.0.0.1 (local/deployments.py);
- the scoring container on Azure ML (``serving/Dockerfile``), a custom-container
  environment whose inference config names the routes below.

Azure ML's own host for ``score.py`` is azureml-inference-server-http (Flask under gunicorn,
one synchronous request per worker, one worker unless ``WORKER_COUNT`` says more); the tests
prove ``score.py`` runs under both unchanged and answers the same statuses.
``bench/serving.py`` measures both.

Routes (the same on both hosts, and in the environment's ``inference_config``):
- ``GET /``: liveness, 200 while the process serves;
- ``GET /ready``: readiness, 200 once ``init()`` has run in this worker (it runs before the
  worker takes requests, so a worker that answers is ready);
- ``POST /score``: ``respond()``'s status and body (400 for a request score.py refuses);
- anything else: 404.

Workers: ``--workers``, else ``WORKER_COUNT`` (what deployments set to their vCPUs), else 1.
Each worker is a process of its own and scores one request at a time, as the inference
server's synchronous workers do; score.py gives each ONNX session one thread.

It runs in the scoring environment's interpreter and imports only the standard library,
uvicorn and orjson (and the entry script)::

    python -P serving/lean_host.py --port 5001 [--host 0.0.0.0] [--workers 4]

with ``AZUREML_MODEL_DIR``, ``AML_APP_ROOT`` and ``AZUREML_ENTRY_SCRIPT`` set as Azure ML sets
them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import uvicorn

TENANT_HEADER = b"x-tenant-id"
JSON_HEADERS = [(b"content-type", b"application/json")]
LIVENESS_ROUTE = "/"
READINESS_ROUTE = "/ready"
SCORING_ROUTE = "/score"
WORKERS_VARIABLE = "WORKER_COUNT"


def load_entry_script() -> ModuleType:
    """The entry script as the inference server loads it: from a file, not a package."""
    script = Path(os.environ.get("AML_APP_ROOT", ".")) / os.environ.get(
        "AZUREML_ENTRY_SCRIPT", "score.py"
    )
    spec = importlib.util.spec_from_file_location("entry_script", script)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the entry script {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


class EndpointApp:
    """A raw ASGI app: three routes, no framework between the socket and the model."""

    def __init__(self, entry: ModuleType) -> None:
        self.entry = entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == SCORING_ROUTE and method == "POST":
            status, body = await self._score(scope, receive)
        elif path in (LIVENESS_ROUTE, "/health") and method == "GET":
            status, body = 200, {"status": "Healthy"}
        elif path == READINESS_ROUTE and method == "GET":
            status, body = 200, {"status": "Ready"}  # init() ran before this worker served
        else:
            status, body = 404, {"error": {"code": "not_found", "message": f"no route {path}"}}
        payload = orjson.dumps(body)
        headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _score(self, scope: dict[str, Any], receive: Any) -> tuple[int, Any]:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name == TENANT_HEADER
        }
        # The model runs on the event loop: one request at a time per worker, as the
        # inference server's synchronous workers run them; a hung model hangs only this
        # worker, and the caller's timeout ends the request.
        status, body = self.entry.respond(b"".join(chunks), headers)
        return int(status), body


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app() -> EndpointApp:
    """Each worker's app: the entry script loaded, and ``init()`` run, in that worker."""
    return EndpointApp(load_entry_script())


def worker_count(asked: int | None) -> int:
    if asked is not None:
        return asked
    raw = os.environ.get(WORKERS_VARIABLE, "1")
    try:
        workers = int(raw)
    except ValueError:
        raise SystemExit(f"{WORKERS_VARIABLE} must be a whole number, not {raw!r}") from None
    if workers < 1:
        raise SystemExit(f"{WORKERS_VARIABLE} must be at least 1, not {workers}")
    return workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=None, help=f"default: {WORKERS_VARIABLE}")
    arguments = parser.parse_args()
    workers = worker_count(arguments.workers)
    options: dict[str, Any] = {
        "host": arguments.host,
        "port": arguments.port,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "lifespan": "on",
    }
    if workers == 1:  # in this process: no supervisor between the socket and the model
        uvicorn.run(create_app(), **options)
        return
    # Several: uvicorn's supervisor forks the workers, each importing this file and making
    # its own app (score.py's init() once per worker, as the inference server's workers).
    uvicorn.run(
        "lean_host:create_app",
        factory=True,
        workers=workers,
        app_dir=str(Path(__file__).resolve().parent),
        **options,
    )


if __name__ == "__main__":
    main()
