"""`mlops up` in its own process, `mlops status --json --show-keys`, a score with a key from
it, and `mlops down` stopping everything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlops.cli import EXIT_CONFIG, EXIT_OK, main
from tests.conftest import ROOT


def test_up_status_score_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "platform"
    args = ["--stack", "local", "--data-dir", str(data_dir), "--root", str(ROOT)]
    assert main(["status", *args]) == EXIT_CONFIG  # nothing is running yet
    up = subprocess.Popen(
        [sys.executable, "-m", "mlops", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 300
        while not (data_dir / "platform.json").exists():
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            assert time.monotonic() < deadline, "the platform did not come up"
            time.sleep(0.5)  # waiting for readiness
        capsys.readouterr()
        assert main(["status", "--json", "--show-keys", *args]) == EXIT_OK
        state = json.loads(capsys.readouterr().out)
        tenant = state["tenants"][0]
        assert tenant["traffic"] == {"blue": 100}
        answer = requests.post(
            tenant["scoring_uri"],
            json=tenant["sample_request"],
            headers={"Authorization": f"Bearer {tenant['keys']['primary']}"},
            timeout=30,
        )
        assert answer.status_code == 200
        assert main(["down", *args]) == EXIT_OK
        assert up.wait(timeout=60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(state["services"]["gateway"] + "/health", timeout=5)
    finally:
        if up.poll() is None:
            up.kill()
