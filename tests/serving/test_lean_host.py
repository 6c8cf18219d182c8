"""The scoring container's entry point, run here as a process (no Docker on these machines):
its build context assembled from the checkout, its Dockerfile's command and environment, a
model where Azure ML mounts one. It answers the inference config's routes, with
azureml-inference-server-http's statuses for the same requests, on as many worker
processes as WORKER_COUNT says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.inference_server import InferenceServer, scoring_python, start_inference_server
from local.processes import children_of, free_port, stop_process
from serving.image import CONTEXT, INFERENCE_CONFIG, PORT, context_digest, write_context
from tests.conftest import ROOT

Splits = dict[str, tuple[Any, Any]]


def _dockerfile(context: Path) -> tuple[list[str], dict[str, str]]:
    """The image's command and the environment its ENV lines set."""
    text = (context / "Dockerfile").read_text()
    [command] = re.findall(r"^CMD (\[.*\])$", text, re.M)
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value
    return json.loads(command), env


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=data, headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Container:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}{route}"


@pytest.fixture(scope="module")
def container(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    context = write_context(ROOT, tmp_path_factory.mktemp("context"))
    command, image_env = _dockerfile(context)
    app_root = image_env["AML_APP_ROOT"]
    # Where Azure ML mounts deployments' models (how-to-deploy-custom-container), as default.
    assert image_env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models"
    # The image's paths, moved to where the context is here; the port, to a free one.
    assert command[:2] == ["python", "-P"] and command[2] == f"{app_root}/lean_host.py"
    assert command[command.index("--port") + 1] == str(PORT)
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in a container
    port = free_port()
    run = [str(scoring_python()), "-P", str(context / "lean_host.py"), "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    env = {
        **os.environ,
        **image_env,
        "AML_APP_ROOT": str(context),
        "AZUREML_MODEL_DIR": str(model_dirs["single"]),  # where Azure ML mounts the model
        "WORKER_COUNT": "2",  # as a deployment on a 2-vCPU instance sets it
    }
    log = (tmp_path_factory.mktemp("container") / "container.log").open("wb")
    process = subprocess.Popen(
        run, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = Container(process, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _call(started.url("/ready"))[0] == 200:
                break
        except OSError:
            time.sleep(0.1)  # polling for readiness, not timing a test
    else:
        raise AssertionError("the container's entry point never became ready")
    yield started
    stop_process(process)
    log.close()


@pytest.fixture(scope="module")
def inference_server(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InferenceServer]:
    server = start_inference_server(
        model_dirs["single"], tmp_path_factory.mktemp("azmlinfsrv") / "server.log"
    )
    yield server
    server.stop()


def test_the_context_is_the_checkouts_files_and_its_digest_follows_them(tmp_path: Path) -> None:
    written = write_context(ROOT, tmp_path / "context")
    assert sorted(p.name for p in written.iterdir()) == sorted(CONTEXT)
    for name, source in CONTEXT.items():
        assert (written / name).read_bytes() == (ROOT / source).read_bytes(), name
    copy = tmp_path / "checkout"
    for source in CONTEXT.values():
        (copy / source).parent.mkdir(parents=True, exist_ok=True)
        (copy / source).write_bytes((ROOT / source).read_bytes())
    assert context_digest(copy) == context_digest(ROOT)
    (copy / "ml/scoring/score.py").write_text((ROOT / "ml/scoring/score.py").read_text() + "\n")
    assert context_digest(copy) != context_digest(ROOT)  # a changed score.py: a new image


def test_the_entry_point_answers_the_inference_config_routes(container: Container) -> None:
    assert INFERENCE_CONFIG["liveness_route"]["path"] == "/"
    for route in ("liveness_route", "readiness_route"):
        assert INFERENCE_CONFIG[route]["port"] == PORT
        status, _ = _call(container.url(str(INFERENCE_CONFIG[route]["path"])))
        assert status == 200, route
    assert _call(container.url("/nowhere"))[0] == 404


def test_it_runs_a_worker_process_per_worker_count(container: Container) -> None:
    # uvicorn's supervisor, and under it one spawned process per worker (beside
    # multiprocessing's resource tracker), each with score.py loaded.
    children = children_of(container.process.pid)
    workers = [
        pid for pid in children
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]  # fmt: skip
    assert len(workers) == 2, children


def test_score_py_answers_the_same_statuses_under_both_hosts(
    container: Container, inference_server: InferenceServer, local_splits: Splits
) -> None:
    rows = local_splits["contoso"][1].X[:3].tolist()
    scoring = str(INFERENCE_CONFIG["scoring_route"]["path"])
    requests: list[Any] = [
        {"data": rows},  # scored
        b'{"data": [[NaN]]}',  # refused by score.py: 400
        b"not json",  # 400
        {"data": [[1.0]]},  # the wrong number of features: 400
    ]
    for body in requests:
        lean = _call(container.url(scoring), body)
        reference = _call(f"{inference_server.url}/score", body)
        assert lean[0] == reference[0], (body, lean, reference)
        if lean[0] == 400:
            assert lean[1] == reference[1], body  # the same error, named the same way
    status, answer = _call(container.url(scoring), {"data": rows})
    assert status == 200 and len(answer["predictions"]) == 3
