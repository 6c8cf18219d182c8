"""Faults while several tenants' requests flow, as the embedded platform meets them: deployment
processes killed at random (the supervisor restarts them), the gateway's kept-alive upstream
connections dropped, and Azurite (where the collected data goes) restarted. The run is bounded
(a fixed number of faults, each waited out on a condition).

What must hold: no tenant goes unserved for longer than a restart takes; every scored request
is collected exactly once (the records are counted in storage); a window in which a deployment
was down never passes a rollout's analysis (its failures are counted, its silence is not a
pass); and everything stops cleanly at the end."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from adapters.local import COLLECTED_CONTAINER
from automation.rollout import analyse
from local.azurite import Azurite, start_azurite
from local.collector import BlobCollector
from local.deployments import START_ALLOWANCE_SECONDS, Supervision
from local.platform import bounded_storage_calls
from local.processes import lifelines_of
from tenancy import PlatformSpec
from tenancy.contracts import COLLECTOR_ROOT
from tests.reliability.conftest import TENANTS, Answer, Load, World, build_world

SUPERVISION = Supervision(
    period_seconds=0.25,
    timeout_seconds=1,
    failure_threshold=2,
    max_restarts=50,  # faults are the test's, not a crash loop
    window_seconds=600,
    backoff_initial_seconds=0.2,
    backoff_max_seconds=1,
)
#: The longest a tenant may go without an answer: the supervisor noticing (a period), the
#: longest backoff, a server starting (the allowance), and the load's own request timeout.
RESTART_BOUND_SECONDS = (
    SUPERVISION.period_seconds
    + SUPERVISION.backoff_max_seconds
    + START_ALLOWANCE_SECONDS
    + 5  # a request sent to a deployment as it died times out (the endpoint's 5 s)
)
FAULTS = 6


@dataclass(frozen=True)
class Kill:
    """A deployment down, then back: monotonic times (the load's) and epoch (the metrics')."""

    tenant: str
    down: float
    up: float
    down_epoch: float
    up_epoch: float


@dataclass
class Chaos:
    world: World
    azurite: Azurite
    collector: BlobCollector
    container: ContainerClient
    kills: list[Kill] = field(default_factory=list)


@pytest.fixture
def chaos(specs: dict[str, PlatformSpec], model_dir: Path, tmp_path: Path) -> Iterator[Chaos]:
    azurite = start_azurite(tmp_path / "azurite")
    storage = BlobServiceClient.from_connection_string(
        azurite.connection_string, **bounded_storage_calls()
    )
    container = storage.create_container(COLLECTED_CONTAINER)
    collector = BlobCollector(container, flush_seconds=0.5).start()
    world = build_world(
        specs["local"], model_dir, tmp_path, collector=collector.submit, supervision=SUPERVISION
    )
    try:
        yield Chaos(world, azurite, collector, container)
    finally:
        world.stop()
        collector.stop()
        azurite.stop()


def _kill_a_deployment(chaos: Chaos, rng: random.Random) -> None:
    tenant = rng.choice(TENANTS)
    running = chaos.world.manager.get(chaos.world.port.endpoint_name(tenant), "blue")
    assert running is not None and running.server is not None
    restarts = running.restarts
    down, down_epoch = time.monotonic(), time.time()
    running.server.kill()
    assert _until(lambda: running.restarts > restarts and running.status == "ready"), (
        running.message
    )
    chaos.kills.append(Kill(tenant, down, time.monotonic(), down_epoch, time.time()))


def _drop_upstream_connections(chaos: Chaos, _: random.Random) -> None:
    """The kept-alive connections reset under the gateway, as a deployment's server closing
    them at its keep-alive timeout while the gateway sends on them."""
    for endpoint in list(chaos.world.gateway.endpoints.values()):
        for deployment in list(endpoint.deployments.values()):
            for _, writer in list(deployment.connections._idle):
                transport_socket = writer.get_extra_info("socket")
                if transport_socket is None:
                    continue
                # The connection itself, through a second descriptor of it (the event
                # loop's own socket object does not shut down).
                with socket.socket(fileno=os.dup(transport_socket.fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)


def _restart_azurite(chaos: Chaos, _: random.Random) -> None:
    chaos.azurite.stop()
    chaos.azurite = start_azurite(
        chaos.azurite.log.parent,
        blob_port=chaos.azurite.blob_port,
        table_port=chaos.azurite.table_port,
    )


FAULT_KINDS = (_kill_a_deployment, _drop_upstream_connections, _restart_azurite)


def _until(condition: object, timeout_seconds: float = 60) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout_seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the platform to recover, not timing it
    return bool(condition())


def _longest_unserved(answers: list[Answer], since: float, until: float) -> float:
    """The longest stretch in [since, until] with no successful answer coming back."""
    served = sorted(a.ended for a in answers if a.status == 200)
    edges = [since, *(t for t in served if since < t < until), until]
    return max(b - a for a, b in itertools.pairwise(edges))


def _stored(container: ContainerClient, collection: str) -> list[dict[str, object]]:
    records = []
    for blob in container.list_blobs(name_starts_with=f"{COLLECTOR_ROOT}/"):
        if f"/{collection}/" in blob.name:
            text = container.download_blob(blob.name).readall().decode()
            records += [json.loads(line) for line in text.splitlines() if line]
    return records


def test_faults_under_load_leave_every_tenant_served_and_every_record_stored_once(
    chaos: Chaos,
) -> None:
    world = chaos.world
    for tenant in TENANTS:
        world.deploy(tenant, "blue")
        world.port.set_traffic(tenant, {"blue": 100}, {})
    loads: dict[str, Load] = {tenant: world.load(tenant, threads=2) for tenant in TENANTS}
    for load in loads.values():
        load.wait_for(30)
    started = time.monotonic()
    rng = random.Random(16)  # noqa: S311 - which fault when, not a secret
    faults = [FAULT_KINDS[i % len(FAULT_KINDS)] for i in range(FAULTS)]
    rng.shuffle(faults)
    for fault in faults:
        fault(chaos, rng)
        for load in loads.values():
            load.wait_for(40)  # the platform serves again before the next fault
    ended = time.monotonic()
    answers = {tenant: load.stop() for tenant, load in loads.items()}

    # No tenant unserved for longer than a restart takes.
    for tenant, theirs in answers.items():
        gap = _longest_unserved(theirs, started, ended)
        assert gap <= RESTART_BOUND_SECONDS, f"{tenant} went {gap:.1f} s without an answer"
        # Only a deployment's death fails requests, and only those in flight or sent while
        # it was down; dropped connections and a storage restart fail none.
        kills = [k for k in chaos.kills if k.tenant == tenant]
        stray = [
            a
            for a in theirs
            if a.status != 200 and not any(a.started <= k.up and a.ended >= k.down for k in kills)
        ]
        assert stray == [], stray[:3]
        assert {a.status for a in theirs} <= {200, 408, 424, 503}
    assert chaos.kills

    # Restarts are counted where operators look: the deployment's state and its metrics.
    for tenant in TENANTS:
        endpoint = world.port.endpoint_name(tenant)
        killed = sum(1 for k in chaos.kills if k.tenant == tenant)
        assert world.admin.deployment(endpoint, "blue")["restarts"] == killed
        assert world.admin.stats(endpoint, "blue", 0, 4e9)["restarts"] == killed

    # Every scored request collected exactly once, across Azurite's restarts.
    chaos.collector.stop()
    scored = sum(1 for theirs in answers.values() for a in theirs if a.status == 200)
    for collection in ("model_inputs", "model_outputs"):
        records = _stored(chaos.container, collection)
        ids = [str(r["correlationid"]) for r in records]
        assert len(ids) == len(set(ids)), f"{collection}: a record was stored twice"
        assert len(ids) == scored, f"{collection}: {len(ids)} records for {scored} answers"
    assert chaos.collector.dropped == 0

    # A window with a deployment down never passes the analysis a rollout would run on it.
    analysis = world.spec.rollout.analysis
    for kill in chaos.kills:
        stats = world.port.deployment_stats(
            kill.tenant,
            "blue",
            datetime.fromtimestamp(kill.down_epoch, UTC),
            datetime.fromtimestamp(kill.up_epoch, UTC),
        )
        verdict, why = analyse(analysis, stats, None)
        assert verdict != "pass", (kill, why)

    # Everything stops, and nothing the deployments ran is left.
    world.stop()
    assert lifelines_of(os.getpid()) == [chaos.azurite.process.pid]
