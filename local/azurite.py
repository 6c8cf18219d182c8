"""Azurite (Azure Storage's emulator, from npm, pinned in package.json) started on free
loopback ports with its data under one folder.

The account and key are Azurite's published development credentials, the same on every
machine; they open nothing but this local emulator.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from local.processes import free_port, spawn, stop_process
from tenancy.errors import DependencyError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    blob_port: int
    table_port: int
    log: Path

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.table_port)

    def stop(self) -> None:
        stop_process(self.process)


def connection_string(blob_port: int, table_port: int) -> str:
    """Azurite's blob and table services on loopback, with the development account."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{ACCOUNT};"
    )


def azurite_binary(root: Path = PROJECT_ROOT) -> Path:
    binary = root / "node_modules" / ".bin" / "azurite"
    if shutil.which("node") is None:
        raise DependencyError("Node.js is missing: Azurite needs it (install Node 18 or later)")
    if not binary.is_file():
        raise DependencyError(f"Azurite is not installed ({binary}): run `make install`")
    return binary


def start_azurite(
    data_dir: Path,
    timeout_seconds: float = 30,
    *,
    blob_port: int | None = None,
    table_port: int | None = None,
) -> Azurite:
    """Blob and table services on 127.0.0.1 (free ports unless given: a restart keeps its
    clients' addresses); returns once both accept calls."""
    data_dir.mkdir(parents=True, exist_ok=True)
    blob_port, table_port = blob_port or free_port(), table_port or free_port()
    queue_port = free_port()
    log = data_dir / "azurite.log"
    command = [
        str(azurite_binary()),
        "--silent",
        "--skipApiVersionCheck",
        "--location", str(data_dir),
        "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
        "--tableHost", "127.0.0.1", "--tablePort", str(table_port),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
    ]  # fmt: skip
    process = spawn(command, log)
    azurite = Azurite(process, blob_port, table_port, log)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DependencyError(f"Azurite exited ({process.returncode}); see {log}")
        if all(_accepts(port) for port in (blob_port, table_port)):
            return azurite
        time.sleep(0.1)  # polling for readiness
    azurite.stop()
    raise DependencyError(f"Azurite did not start within {timeout_seconds:g} s; see {log}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
