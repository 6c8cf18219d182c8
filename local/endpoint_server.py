"""A deployment's process on the embedded platform: the same scoring contract (``score.py``'s
``init()`` once, then ``run()``'s status and body per request) served by uvicorn on
127.0.0.1.

Azure ML runs ``score.py`` under azureml-inference-server-http (Flask under gunicorn, one
synchronous request per worker); the tests prove the file runs there unchanged. Locally the
gateway adds its own hop in front of every deployment, so the deployment's server has to be
lean for the whole path to stay fast: this one parses nothing but the request line and the
``x-tenant-id`` header and hands the body to ``score.py`` as the inference server does.
``bench/serving.py`` measures both.

It runs in the scoring environment's interpreter (``.venv-scoring``) and imports only the
standard library, uvicorn, orjson and the entry script::

    python -P local/endpoint_server.py --port 5001

with ``AZUREML_MODEL_DIR``, ``AML_APP_ROOT`` and ``AZUREML_ENTRY_SCRIPT`` set as Azure ML
sets them. ``GET /`` answers 200 once ``init()`` has run (the inference server's liveness
route), ``POST /score`` scores.
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
    """A raw ASGI app: two routes, no framework between the socket and the model."""

    def __init__(self, entry: ModuleType) -> None:
        self.entry = entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/score" and method == "POST":
            status, body = await self._score(scope, receive)
        elif path in ("/", "/health") and method == "GET":
            status, body = 200, {"status": "Healthy"}
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
        # process, and the gateway times its requests out.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    app = EndpointApp(load_entry_script())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
