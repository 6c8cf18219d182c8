"""The embedded platform's serving plane, judged by the same rules as Azure's: what it runs
passes; a deployment registered by URL, which nothing here probes, is found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.local import GatewayAdmin, LocalPlatform
from automation.audit import PolicyAudit
from automation.store import MemoryStore
from local.deployments import DeploymentManager, Running, Supervision
from local.gateway import Gateway, TenantLimits
from local.keys import KeyRing
from local.serve import BackgroundServer
from ml.registry import RegistryLayout
from tenancy import PlatformSpec
from tests.local.upstream import upstreams


@pytest.fixture
def platform(specs: dict[str, PlatformSpec], tmp_path: Path) -> Iterator[LocalPlatform]:
    spec = specs["local"]
    gateway = Gateway(
        KeyRing(MemoryStore()), {t.id: TenantLimits(600, 1024) for t in spec.tenants}, "admin"
    )
    manager = DeploymentManager(
        tmp_path,
        gateway.register,
        gateway.unregister,
        supervision=Supervision.of(spec.serving),
        suspend=gateway.suspend,
    )
    gateway.deployer = manager
    server = BackgroundServer(gateway.app).start()
    admin = GatewayAdmin(server.url, "admin")
    adapter = LocalPlatform(spec, RegistryLayout(spec, tmp_path), admin)
    endpoint = adapter.endpoint_name("contoso")
    admin.put_endpoint(endpoint, ["contoso"], False, 5)
    # A deployment the platform runs (the supervisor probes it), as a build leaves it.
    blue = Running(endpoint, "blue", tmp_path, {"*": "contoso-classical/1"}, "ready")
    manager.running[(endpoint, "blue")] = blue
    gateway.register(endpoint, "blue", "http://127.0.0.1:9/blue")
    admin.set_traffic(endpoint, {"blue": 100}, {})
    try:
        yield adapter
    finally:
        manager.stop_all()
        server.stop()


def test_what_the_embedded_platform_runs_passes_and_an_unprobed_deployment_is_found(
    platform: LocalPlatform,
) -> None:
    sent: list[tuple[str, str, str]] = []
    audit = PolicyAudit(
        platform.spec, MemoryStore(), lambda *n: sent.append(n), lambda: datetime.now(UTC)
    )
    inventory = platform.live_resources()
    assert [r.type_token.rsplit(":", 1)[-1] for r in inventory] == [  # type: ignore[union-attr]
        "OnlineEndpoint",
        "OnlineDeployment",
    ]
    assert audit.run(inventory, platform.judged_rules).opened == []
    with upstreams("green") as servers:  # a server someone else runs, registered by URL
        platform.gateway.put_deployment(
            platform.endpoint_name("contoso"), "green", servers["green"].url
        )
        opened = audit.run(platform.live_resources(), platform.judged_rules).opened
    assert [(f.policy, f.resource.rsplit("/", 1)[-1], f.tenant) for f in opened] == [
        ("deployment-probes", "green", "contoso")
    ]
    assert [(tenant, severity) for tenant, severity, _ in sent] == [("contoso", "error")]
