"""What the embedded platform keeps and tells between its parts, without starting them: the
routing state it writes at every change (never a half-restored one), and the notification of a
crash loop on a deployment that serves live traffic."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automation.store import MemoryStore
from local.deployments import DeploymentManager, Running
from local.gateway import EndpointConfig, Gateway
from local.keys import KeyRing
from local.platform import GATEWAY_STATE_FILE, GATEWAY_STOPS_FILE, EmbeddedPlatform
from tenancy import PlatformSpec


class Notified:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, tenant: str, severity: str, message: str) -> None:
        self.sent.append((tenant, severity, message))


def _platform(spec: PlatformSpec, data_dir: Path) -> tuple[EmbeddedPlatform, Gateway]:
    platform = EmbeddedPlatform(spec, "local", data_dir)
    gateway = Gateway(KeyRing(MemoryStore()), {}, "admin", on_change=platform._save)
    gateway.deployer = DeploymentManager(data_dir / "deployments", gateway.register, lambda *_: 0)
    gateway.endpoints["ep-pool"] = EndpointConfig("ep-pool", {"fabrikam", "northwind"}, True)
    platform.gateway = gateway
    return platform, gateway


def _deployed(gateway: Gateway, name: str, status: str = "ready") -> Running:
    assert gateway.deployer is not None
    running = Running("ep-pool", name, Path("unused"), {"fabrikam": f"m/{name}"}, status)
    gateway.deployer.running[("ep-pool", name)] = running
    gateway.register("ep-pool", name, f"http://127.0.0.1:1/{name}")
    return running


def _saved(data_dir: Path) -> Any:
    path = data_dir / GATEWAY_STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def test_routing_is_saved_at_each_change_but_never_before_the_restore(
    specs: dict[str, PlatformSpec], tmp_path: Path
) -> None:
    platform, gateway = _platform(specs["local"], tmp_path)
    _deployed(gateway, "blue")
    assert _saved(tmp_path) is None  # still restoring: the file holds what it restores
    platform._restored = True
    _deployed(gateway, "green")
    _deployed(gateway, "broken", status="failed")
    endpoint = gateway.endpoints["ep-pool"]
    endpoint.traffic, endpoint.mirror = {"blue": 100, "green": 0}, {"green": 20}
    gateway._changed()  # what the admin API's traffic update does
    assert _saved(tmp_path) == {
        "ep-pool": {
            "traffic": {"blue": 100, "green": 0},
            "mirror": {"green": 20},
            "deployments": {"blue": {"fabrikam": "m/blue"}, "green": {"fabrikam": "m/green"}},
        }
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partials


def test_a_crash_loop_is_notified_to_the_tenants_only_when_it_served_live_traffic(
    specs: dict[str, PlatformSpec], tmp_path: Path
) -> None:
    platform, gateway = _platform(specs["local"], tmp_path)
    contacts = Notified()
    platform.adapter = contacts  # type: ignore[assignment]
    blue, green = _deployed(gateway, "blue"), _deployed(gateway, "green")
    gateway.endpoints["ep-pool"].traffic = {"blue": 100, "green": 0}
    green.message = "crash loop: 4 restarts within 120 s (last: its process exited (1))"
    platform._deployment_failed(green)  # a green at 0 %: the rollout sees it failed
    assert contacts.sent == []
    blue.message = "crash loop: 4 restarts within 120 s (last: its process exited (-9))"
    platform._deployment_failed(blue)
    assert [(t, s) for t, s, _ in contacts.sent] == [("fabrikam", "error"), ("northwind", "error")]
    assert all("serving live traffic" in m and "crash loop" in m for _, _, m in contacts.sent)


def test_budget_stops_in_force_outlive_a_restart_and_past_ones_do_not(
    specs: dict[str, PlatformSpec], tmp_path: Path
) -> None:
    platform, gateway = _platform(specs["local"], tmp_path)
    platform._restored = True
    future, past = time.time() + 86_400, time.time() - 1
    gateway.budget_stops = {"fabrikam": (future, "day"), "northwind": (past, "day")}
    gateway._changed()  # what the admin API's stop does
    saved = json.loads((tmp_path / GATEWAY_STOPS_FILE).read_text())
    assert saved == {"fabrikam": future, "northwind": past}
    restarted, _ = _platform(specs["local"], tmp_path)
    day = datetime.fromtimestamp(future, UTC).date().isoformat()
    assert restarted._saved_stops() == {"fabrikam": (future, day)}
