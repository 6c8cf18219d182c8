"""What a benchmark ran on: the machine and the versions of every part measured."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "onnxruntime",
    "mlflow",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "numpy",
    "scikit-learn",
    "pulumi",
    "pulumi-azure-native",
)
SCORING_PACKAGES = ("azureml-inference-server-http", "gunicorn", "flask", "onnxruntime", "uvicorn")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    script = (
        "import json, sys\nfrom importlib import metadata\nfound = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: found[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    try:
        answer = subprocess.run(
            [str(python), "-c", script, *names], capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(json.loads(answer.stdout))


def _node_tool(name: str) -> str:
    package = ROOT / "node_modules" / name / "package.json"
    if not package.is_file():
        return ""
    return str(json.loads(package.read_text()).get("version", ""))


def describe() -> dict[str, Any]:
    control = {}
    for name in PACKAGES:
        try:
            control[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": control,
        "scoring_environment": _versions(
            ROOT / ".venv-scoring" / "bin" / "python", SCORING_PACKAGES
        ),
        "autocannon": _node_tool("autocannon"),
        "azurite": _node_tool("azurite"),
    }
