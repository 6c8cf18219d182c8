"""The scoring container's Docker build context, from this checkout: what Azure ML builds the
lean serving environment from, and what the tests run as a process here (no Docker on these
machines).

One source per file: the lean host is the embedded platform's (``serving/lean_host.py``),
score.py the one both hosts run (``ml/scoring/score.py``), the requirements the scoring
environment's. The context's digest is the environment's version, so a change to any of
them is a new image and an unchanged checkout never rebuilds one.

The inference config is what Azure ML probes and routes to in a custom container:
https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container
(liveness and readiness routes, scoring route, each with its port).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Final

PORT: Final = 5001
#: Context file -> its source in the checkout.
CONTEXT: Final[dict[str, str]] = {
    "Dockerfile": "serving/Dockerfile",
    "lean_host.py": "serving/lean_host.py",
    "host-requirements.txt": "serving/requirements.txt",
    "scoring-requirements.txt": "ml/scoring/requirements.txt",
    "score.py": "ml/scoring/score.py",
}
INFERENCE_CONFIG: Final[dict[str, dict[str, int | str]]] = {
    "liveness_route": {"port": PORT, "path": "/"},
    "readiness_route": {"port": PORT, "path": "/ready"},
    "scoring_route": {"port": PORT, "path": "/score"},
}
ENVIRONMENT_NAME: Final = "tenant-mlops-lean-scoring"


def context_files(root: Path) -> dict[str, Path]:
    """{name in the context: its file}, every one present (a missing one is named)."""
    files = {name: root / source for name, source in CONTEXT.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"the scoring container's context lacks {', '.join(missing)}")
    return files


def context_digest(root: Path) -> str:
    """sha256 over the context's names and contents, in name order."""
    digest = hashlib.sha256()
    for name, path in sorted(context_files(root).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def environment_version(root: Path) -> str:
    """The environment's version: the context's digest, short."""
    return context_digest(root)[:16]


def write_context(root: Path, folder: Path) -> Path:
    """The build context as a folder (what ``docker build`` or Azure ML receives)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in context_files(root).items():
        shutil.copyfile(path, folder / name)
    return folder
