"""The floor of `bench/serving.py`: a minimal single-process uvicorn app that calls
onnxruntime directly. No auth, no routing, no validation beyond what json and numpy do, no
collection, no metrics: what any serving path on this machine costs at the least.

    python bench/floor_server.py --model model.onnx --port 8000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn

HEADERS = [(b"content-type", b"application/json")]


def make_app(model_path: str) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as every other server in the comparison
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        rows = json.loads(b"".join(chunks))["data"]
        labels, probabilities = session.run(None, {input_name: np.asarray(rows, dtype=np.float32)})
        body = json.dumps(
            {"predictions": labels.tolist(), "probabilities": probabilities.round(6).tolist()}
        ).encode()
        headers = [*HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    uvicorn.run(
        make_app(arguments.model),
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
