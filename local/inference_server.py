"""Start the scoring contract under azureml-inference-server-http, as Azure ML runs it, bound
to 127.0.0.1 (``azmlinfsrv`` itself always binds 0.0.0.0, so its Flask app is served by the
same gunicorn it uses, with the address given here).

The server runs in the scoring environment's own interpreter (``.venv-scoring``, built by the
Makefile from ``ml/scoring/requirements.txt``), as the endpoint's container is separate from
the control plane in Azure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from local.processes import STOP_GRACE_SECONDS, children_of, free_port, spawn, stop_process
from tenancy.errors import DependencyError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCORING_CODE = PROJECT_ROOT / "ml" / "scoring"
#: The lean host, shared with the scoring container (serving/Dockerfile).
LEAN_SERVER = PROJECT_ROOT / "serving" / "lean_host.py"
ServerKind = Literal["azmlinfsrv", "lean"]


def scoring_python(root: Path = PROJECT_ROOT) -> Path:
    configured = os.environ.get("TENANT_MLOPS_SCORING_PYTHON")
    python = Path(configured) if configured else root / ".venv-scoring" / "bin" / "python"
    if not python.is_file():
        raise DependencyError(
            f"the scoring environment is missing ({python}): run `make install` to build it"
        )
    return python


@dataclass
class InferenceServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        """Gone at once, workers and lifeline too, as a container that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def service_pid(self) -> int | None:
        """The server's own process, under its lifeline (None once it is gone)."""
        children = children_of(self.process.pid)
        return children[0] if children else None


def start_inference_server(
    model_dir: Path,
    log: Path,
    *,
    entry_script: str = "score.py",
    workers: int = 1,
    port: int | None = None,
    timeout_seconds: float = 60,
    env: dict[str, str] | None = None,
    server: ServerKind = "azmlinfsrv",
    grace_seconds: float = STOP_GRACE_SECONDS,
) -> InferenceServer:
    """Serve ``entry_script`` with the models under ``model_dir``; returns once healthy.

    ``server`` is azureml-inference-server-http (what Azure ML runs by default; ``workers``
    gunicorn workers) or ``lean``, the uvicorn host of the same contract that the embedded
    platform and the scoring container run (``serving/lean_host.py``; ``workers`` processes
    when more than one)."""
    port = port or free_port()
    environment = {
        **os.environ,
        "AZUREML_MODEL_DIR": str(model_dir),
        "AZUREML_ENTRY_SCRIPT": entry_script,
        "AML_APP_ROOT": str(SCORING_CODE),
        "AZUREML_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    if server == "azmlinfsrv":
        command = [
            str(scoring_python()),
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--timeout",
            "300",
            "--no-control-socket",  # gunicorn would otherwise create ~/.gunicorn
            "azureml_inference_server_http.server.entry:app",
        ]
    else:
        # -P: the script's folder must not be searched before the stdlib.
        command = [
            str(scoring_python()),
            "-P",
            str(LEAN_SERVER),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    process = spawn(command, log, cwd=SCORING_CODE, env=environment, grace_seconds=grace_seconds)
    started = InferenceServer(process, port, log)
    _wait_healthy(started, timeout_seconds)
    return started


def _wait_healthy(server: InferenceServer, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DependencyError(
                f"the inference server exited ({server.process.returncode}); see {server.log}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)  # polling for readiness, not timing a test
    server.stop()
    raise DependencyError(f"the inference server did not become healthy; see {server.log}")
